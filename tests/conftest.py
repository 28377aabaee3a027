"""Shared pytest fixtures (keep generic: several test modules use them)."""
from __future__ import annotations

import numpy as np
import pytest


def draw_synthetic_xray(seed: int, shape: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A distinct, smooth, radiograph-like uint8 image: soft blobs and bright 'bone' bars on a dark field."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.full(shape, 20.0, dtype=np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 30)
        image += rng.uniform(30, 90) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    for _ in range(3):
        angle, offset, width = rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3) * w, rng.uniform(3, 9)
        distance = np.abs((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) - offset)
        image += rng.uniform(60, 120) * (distance < width)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def synthetic_xray():
    """Factory: synthetic_xray(seed, shape=(160, 128)) -> distinct uint8 grayscale image."""
    return draw_synthetic_xray
