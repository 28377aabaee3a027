"""Training augmentation: deterministic per seed, uint8 in and out, and each acquisition shift does what it names."""
from dataclasses import replace

import numpy as np
import pytest

from fracture_edge.train.augment import AUGMENTATIONS, AugmentOptions, augment_pixels, augmented_views
from fracture_edge.train.options import TrainOptions

NOTHING = AugmentOptions(hflip=0.0, max_rotation=0.0, brightness=0.0, contrast=0.0)


def _image(size: int = 48) -> np.ndarray:
    gray = np.random.default_rng(3).integers(0, 256, (size, size), dtype=np.uint8)
    gray[: size // 4] = 20                       # an asymmetric image: every turn and flip differs
    return np.repeat(gray[:, :, None], 3, axis=2)


def test_robust_views_are_deterministic_uint8_and_keep_the_shape():
    pixels = np.stack([_image(), _image()[::-1]])
    first = augmented_views(pixels, 3, seed=5, opts=AUGMENTATIONS["robust"])
    again = augmented_views(pixels, 3, seed=5, opts=AUGMENTATIONS["robust"])
    assert first.shape == (6, 48, 48, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[:2], pixels)                          # view 0 is the original
    assert (first[:, :, :, 0] == first[:, :, :, 2]).all()                     # still gray as RGB


def test_inversion_alone_is_exact_polarity_flip():
    image = _image()
    out = augment_pixels(image, np.random.default_rng(0), replace(NOTHING, invert=1.0))
    np.testing.assert_array_equal(out, 255 - image)


def test_quarter_turns_alone_rotate_by_a_multiple_of_90_degrees():
    image = _image()
    for seed in range(6):
        out = augment_pixels(image, np.random.default_rng(seed), replace(NOTHING, quarter_turns=1.0))
        assert any(np.array_equal(out, np.rot90(image, k)) for k in (1, 2, 3)), seed


def test_no_acquisition_shift_when_its_probability_is_zero():
    image = _image()
    np.testing.assert_array_equal(augment_pixels(image, np.random.default_rng(0), NOTHING), image)


@pytest.mark.parametrize("name", ["zoom", "exposure", "text", "low_res", "blur", "jpeg", "noise"])
def test_each_acquisition_shift_changes_the_image(name):
    image = np.repeat(_image(256)[:, :, :1] // 2 + 60, 3, axis=2)   # detail to blur, room to brighten
    out = augment_pixels(image, np.random.default_rng(1), replace(NOTHING, **{name: 1.0}))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image), name


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="--augment"):
        TrainOptions(data="d", out="o", augment="heavy")
