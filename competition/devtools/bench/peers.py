"""The loaders the kit is measured against, written as a competitor would
write them: the per-image DataGenerator of the common tutorials ("seeds")
and an idiomatic tf.data pipeline over the DICOM files."""

from __future__ import annotations

import cv2
import numpy as np

from competition.data.dicom import lenient_uids


def seeds_decode(path: str, windows, size: int) -> np.ndarray:
    """What the tutorials do per image: full read, pixel_array, rescale,
    window each channel in float, resize."""
    import pydicom

    with lenient_uids():
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    channels = [
        np.clip((hu - (c - w / 2)) / w * 255.0, 0, 255).astype(np.uint8) for c, w in windows
    ]
    return cv2.resize(np.stack(channels, axis=-1), (size, size))


class SeedsGenerator:
    """The seeds' generator: reads, windows and resizes each DICOM in
    __getitem__, one worker."""

    def __init__(self, paths: list[str], windows, size: int, batch_size: int):
        self.paths, self.windows, self.size, self.batch_size = paths, windows, size, batch_size

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def __getitem__(self, index: int) -> np.ndarray:
        chunk = self.paths[index * self.batch_size : (index + 1) * self.batch_size]
        return np.stack([seeds_decode(p, self.windows, self.size) for p in chunk]).astype(
            np.float32
        )


def tfdata_over_dicom(paths: list[str], windows, size: int, batch_size: int):
    import tensorflow as tf

    def decode(path):
        return seeds_decode(path.decode(), windows, size).astype(np.float32)

    def load(path):
        image = tf.numpy_function(decode, [path], tf.float32)
        image.set_shape((size, size, len(windows)))
        return image

    return (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
