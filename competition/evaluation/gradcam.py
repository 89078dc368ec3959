"""Grad-CAM on whichever backend the fold runs: the network split at its
last feature map (the input of its pooling layer) into features and head;
the gradient of one output with respect to the feature map comes from the
backend's own autodiff (a small function each), the rest is numpy.

    cam = ReLU(sum_c mean_hw(d output / d A_c) * A_c), resized to the image, 0..1
"""

from __future__ import annotations

import cv2
import keras
import numpy as np


def split_at_features(network: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(image -> last feature map, feature map -> outputs) of a kit network."""
    pool = network.get_layer("pool")
    features = keras.Model(network.input, pool.input, name="features")
    head = keras.Model(pool.input, network.output, name="head")
    return features, head


def _gradient(head: keras.Model, feature_map: np.ndarray, output: int) -> np.ndarray:
    """d head(A)[:, output] / d A, summed over the batch (each row its own)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        a = tf.convert_to_tensor(feature_map)
        with tf.GradientTape() as tape:
            tape.watch(a)
            total = tf.reduce_sum(head(a, training=False)[:, output])
        return tape.gradient(total, a).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda a: head(a, training=False)[:, output].sum())(feature_map))
    if backend == "torch":
        import torch

        a = torch.tensor(feature_map, requires_grad=True)
        head(a, training=False)[:, output].sum().backward()
        return a.grad.detach().cpu().numpy()
    raise NotImplementedError(f"Grad-CAM has no gradient function for the {backend} backend")


def grad_cam(network: keras.Model, images: np.ndarray, outputs: list[int]) -> np.ndarray:
    """One heat map (H, W) in 0..1 per image, for the output at the same index."""
    features, head = split_at_features(network)
    feature_map = keras.ops.convert_to_numpy(features(images, training=False)).astype(np.float32)
    maps = np.zeros((len(images), *feature_map.shape[1:3]), np.float32)
    for output in sorted(set(outputs)):
        rows = [i for i, o in enumerate(outputs) if o == output]
        grads = _gradient(head, feature_map[rows], output)
        weights = grads.mean(axis=(1, 2), keepdims=True)
        maps[rows] = np.maximum((weights * feature_map[rows]).sum(axis=-1), 0)
    size = images.shape[2], images.shape[1]
    resized = [cv2.resize(m, size, interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.stack([m / m.max() if m.max() > 0 else m for m in resized])
