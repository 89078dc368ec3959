"""Training augmentations on a whole (B, H, W, C) batch in 0..255, in place:
flips (uint8 or float32, so a flips-only pipeline never leaves uint8) and
brightness/contrast vectorised over the batch; the small affine (rotate,
scale, shift) per image with OpenCV, only when enabled."""

from __future__ import annotations

import cv2
import numpy as np

from competition.config import AugmentConfig


def _affine(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    h, w = image.shape[:2]
    angle = rng.uniform(-cfg.rotate, cfg.rotate)
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    out = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return out.reshape(image.shape)  # warpAffine drops a single channel axis


def _flip(batch: np.ndarray, chosen: np.ndarray, axis: int) -> None:
    """Flip the chosen images in place (OpenCV's SIMD flip where it can)."""
    for i in np.flatnonzero(chosen):
        image = batch[i]
        if image.shape[-1] <= 4 and image.flags.c_contiguous:
            cv2.flip(image, 1 if axis == 2 else 0, dst=image)
        else:
            batch[i] = np.flip(image, axis=axis - 1)


def flip_batch(batch: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """The flips alone, in place, on uint8 or float32: flipping commutes with
    the cast, so the cache path flips its uint8 batch (4x less to move)."""
    n = len(batch)
    _flip(batch, rng.random(n) < cfg.hflip, axis=2)
    _flip(batch, rng.random(n) < cfg.vflip, axis=1)
    return batch


def distort_batch(batch: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """The affine and brightness/contrast, in place, on a float32 batch."""
    n = len(batch)
    if cfg.rotate or cfg.scale or cfg.shift:
        for i in range(n):
            batch[i] = _affine(batch[i], rng, cfg)
    if cfg.contrast or cfg.brightness:
        shape = (n, 1, 1, 1)
        contrast = (1.0 + rng.uniform(-cfg.contrast, cfg.contrast, n)).astype(np.float32)
        offset = (127.5 + rng.uniform(-cfg.brightness, cfg.brightness, n) * 255.0).astype(
            np.float32
        )
        batch -= np.float32(127.5)
        batch *= contrast.reshape(shape)
        batch += offset.reshape(shape)
        np.clip(batch, 0, 255, out=batch)
    return batch


def needs_float(cfg: AugmentConfig | None) -> bool:
    """Whether the augmentation goes beyond flips (which stay in uint8)."""
    return cfg is not None and bool(
        cfg.rotate or cfg.scale or cfg.shift or cfg.contrast or cfg.brightness
    )


def augment_batch(batch: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Every augmentation, in place, on a float32 batch (flips first)."""
    return distort_batch(flip_batch(batch, rng, cfg), rng, cfg)
