"""Radiograph-suited augmentation on model-input pixels: flips, small rotations, brightness/contrast."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class AugmentOptions:
    hflip: float = 0.5            # probability of a left-right flip (laterality is not a fracture sign)
    vflip: float = 0.0            # up-down flips make unnatural anatomy; off by default
    max_rotation: float = 10.0    # degrees, uniform in [-max, max]
    brightness: float = 0.10      # +- fraction of full scale
    contrast: float = 0.15        # +- fraction around the image mean


def augment_pixels(pixels: np.ndarray, rng: np.random.Generator, opts: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """Augment one (S, S, 3) uint8 gray-as-RGB model input; returns a new uint8 array of the same shape."""
    gray = pixels[:, :, 0].astype(np.float32)
    if rng.random() < opts.hflip:
        gray = gray[:, ::-1]
    if rng.random() < opts.vflip:
        gray = gray[::-1, :]
    if opts.max_rotation > 0:
        angle = float(rng.uniform(-opts.max_rotation, opts.max_rotation))
        img = Image.fromarray(gray, mode="F").rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0.0)
        gray = np.asarray(img, dtype=np.float32)
    mean = float(gray.mean())
    gray = (gray - mean) * (1.0 + rng.uniform(-opts.contrast, opts.contrast)) + mean
    gray = gray + 255.0 * rng.uniform(-opts.brightness, opts.brightness)
    out = np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)
    return np.repeat(out[:, :, None], pixels.shape[2], axis=2)


def view_augmenter(seed: int, opts: AugmentOptions = AugmentOptions()) -> Callable[[np.ndarray], np.ndarray]:
    """batch -> its augmented copy, drawing from one generator across calls: batches fed in order give exactly
    augmented_views(pixels, 2, seed)[len(pixels):], without ever holding that whole view (training caches it)."""
    rng = np.random.default_rng(seed)
    return lambda batch: np.stack([augment_pixels(p, rng, opts) for p in batch])


def augmented_views(pixels: np.ndarray, views: int, seed: int, opts: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """(N, S, S, 3) -> (N * views, S, S, 3): view 0 is the original, the others are augmented."""
    rng = np.random.default_rng(seed)
    out = [pixels]
    for _ in range(views - 1):
        out.append(np.stack([augment_pixels(p, rng, opts) for p in pixels]))
    return np.concatenate(out, axis=0)
