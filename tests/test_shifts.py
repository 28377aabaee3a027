"""Acquisition shifts: pure, seeded, shape-keeping, and each does what its name says."""
import numpy as np
import pytest

from fracture_edge.edge_runtime.shifts import apply_shift, shift_names

REQUIRED = {"invert", "rotate-90", "rotate-180", "rotate-270", "tilt+15", "tilt-15", "hflip", "zoom-in-0.7",
            "zoom-out-0.7", "burned-in-text", "gamma-0.6", "gamma-1.6", "contrast-0.6", "jpeg-30", "blur",
            "noise-8", "low-res-128"}


@pytest.fixture(scope="module")
def pixels(synthetic_xray):
    """Two 160-px model inputs (gray repeated into RGB), as the preprocessing produces them."""
    grays = [synthetic_xray(seed, (160, 160)) for seed in (1, 2)]
    return np.stack([np.repeat(g[:, :, None], 3, axis=2) for g in grays])


def gray(x):
    return x[..., 0].astype(np.float64)


def high_frequency(x):
    g = gray(x)
    return float(np.abs(np.diff(g, axis=-1)).mean() + np.abs(np.diff(g, axis=-2)).mean())


def test_the_suite_names_every_required_shift():
    assert REQUIRED <= set(shift_names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_shift_is_deterministic_and_keeps_shape_dtype_and_gray(name, pixels):
    out = apply_shift(name, pixels, seed=7)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert np.array_equal(out, apply_shift(name, pixels, seed=7))
    assert not np.array_equal(out, pixels)
    assert np.array_equal(pixels, apply_shift("hflip", apply_shift("hflip", pixels)))  # input untouched


def test_geometry(pixels):
    assert np.array_equal(apply_shift("invert", pixels), 255 - pixels)
    assert np.array_equal(apply_shift("rotate-90", pixels)[0, :, :, 0], np.rot90(pixels[0, :, :, 0]))
    four = pixels
    for _ in range(4):
        four = apply_shift("rotate-90", four)
    assert np.array_equal(four, pixels)
    assert np.array_equal(apply_shift("rotate-180", pixels), apply_shift("rotate-90", apply_shift("rotate-90", pixels)))
    assert np.array_equal(apply_shift("hflip", pixels)[0, :, 0, 0], pixels[0, :, -1, 0])
    tilted = apply_shift("tilt+15", pixels)
    assert (tilted[:, 0, 0] == 0).all()                                  # corners leave the film
    assert abs(gray(tilted)[:, 80, 80] - gray(pixels)[:, 80, 80]).max() <= 12   # the centre stays
    out = apply_shift("zoom-out-0.7", pixels)
    assert (out[:, :20] == 0).all() and (out[:, -20:] == 0).all() and out[:, 60:100].mean() > 0
    zoomed = apply_shift("zoom-in-0.7", pixels)
    assert high_frequency(zoomed) < high_frequency(pixels)              # magnified: fewer edges per pixel


def test_intensity(pixels):
    mean = gray(pixels).mean()
    assert gray(apply_shift("gamma-0.6", pixels)).mean() > mean > gray(apply_shift("gamma-1.6", pixels)).mean()
    flat = apply_shift("contrast-0.6", pixels)
    assert gray(flat).std() == pytest.approx(0.6 * gray(pixels).std(), rel=0.02)
    assert gray(flat).mean() == pytest.approx(mean, abs=1)
    noisy = gray(apply_shift("noise-8", pixels)) - gray(pixels)
    assert 6 < noisy.std() < 9 and abs(noisy.mean()) < 1
    assert not np.array_equal(apply_shift("noise-8", pixels, seed=1), apply_shift("noise-8", pixels, seed=2))


def test_degradations_remove_detail(pixels):
    noisy = apply_shift("noise-8", pixels)     # detail to lose
    for name in ("blur", "low-res-128", "jpeg-30"):
        assert high_frequency(apply_shift(name, noisy)) < 0.8 * high_frequency(noisy), name
    jpeg = apply_shift("jpeg-30", pixels)
    assert abs(gray(jpeg).mean() - gray(pixels).mean()) < 2


def test_burned_in_text_paints_white_marks_only(pixels):
    out = apply_shift("burned-in-text", pixels, seed=3)
    changed = out[..., 0] != pixels[..., 0]
    assert 0.002 < changed.mean() < 0.2
    assert (out[..., 0][changed] > pixels[..., 0][changed]).mean() > 0.9   # marks are bright
    assert not np.array_equal(out, apply_shift("burned-in-text", pixels, seed=4))


def test_bad_requests_are_clear():
    with pytest.raises(ValueError, match="unknown shift 'sepia'.*invert"):
        apply_shift("sepia", np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="square model inputs"):
        apply_shift("invert", np.zeros((8, 8), np.uint8))


def test_dither_moves_pixels_by_at_most_one_level(pixels):
    out = apply_shift("dither-1", pixels, seed=0).astype(int)
    change = out - pixels.astype(int)
    assert np.abs(change).max() == 1 and 0.5 < (change != 0).mean() < 0.8


@pytest.mark.parametrize("name", ["dither-1", "jpeg-90", "resample-bicubic"])
def test_stability_probes_are_invisible_deterministic_and_left_out_of_the_worst(name, pixels):
    from fracture_edge.edge_runtime.shift_scores import worst_and_mean
    from fracture_edge.edge_runtime.shifts import STABILITY_PROBES

    out = apply_shift(name, pixels, seed=3)
    change = np.abs(out.astype(int) - pixels.astype(int))
    assert out.shape == pixels.shape and np.array_equal(out, apply_shift(name, pixels, seed=3))
    assert 0 < change.mean() < 2.0 and np.median(change) <= 1   # about a grey level; more only at sharp edges
    assert name in STABILITY_PROBES
    rows = {"invert": {"auc": {"value": 0.8}}, name: {"auc": {"value": 0.1}}}
    assert worst_and_mean(rows) == {"worst": {"shift": "invert", "auc": 0.8}, "mean_auc": 0.8, "acquisition_shifts": 1}
