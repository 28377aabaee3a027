"""Training caches its inputs without whole-split copies, and the result is the same (no TensorFlow needed)."""
from __future__ import annotations

import numpy as np

from fracture_edge.train.augment import augmented_views, view_augmenter


def test_streamed_augmentation_equals_augmenting_the_whole_split_first():
    pixels = np.random.default_rng(0).integers(0, 256, (11, 24, 24, 3), dtype=np.uint8)
    whole = augmented_views(pixels, 2, seed=7)[len(pixels):]
    augment = view_augmenter(7)
    streamed = np.concatenate([augment(pixels[i:i + 4]) for i in range(0, len(pixels), 4)])
    assert streamed.dtype == np.uint8 and np.array_equal(streamed, whole)
