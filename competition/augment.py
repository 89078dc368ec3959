"""Training augmentations with OpenCV and NumPy: flips, a small affine
(rotate, scale, shift) and brightness/contrast, on windowed images in 0..255."""

from __future__ import annotations

import cv2
import numpy as np

from competition.config import AugmentConfig


def _affine(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if not (cfg.rotate or cfg.scale or cfg.shift):
        return image
    h, w = image.shape[:2]
    angle = rng.uniform(-cfg.rotate, cfg.rotate)
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    out = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return out.reshape(image.shape)  # warpAffine drops a single channel axis


def augment_image(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One (H, W, C) float32 image in 0..255 -> an augmented copy, same shape."""
    if rng.random() < cfg.hflip:
        image = image[:, ::-1]
    if rng.random() < cfg.vflip:
        image = image[::-1]
    image = _affine(np.ascontiguousarray(image), rng, cfg)
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    brightness = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    if contrast != 1.0 or brightness:
        image = (image - 127.5) * np.float32(contrast) + np.float32(127.5 + brightness)
        np.clip(image, 0, 255, out=image)
    return image


def augment_batch(batch: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Augment every image of a (B, H, W, C) float32 batch, in place."""
    for i in range(len(batch)):
        batch[i] = augment_image(batch[i], rng, cfg)
    return batch
