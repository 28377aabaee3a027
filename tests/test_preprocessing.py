"""The shared preprocessing: filter properties, rounding, and parity between training and runtime paths."""
import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime import preprocessing
from fracture_edge.edge_runtime.preprocessing import InputContract, load_batch, load_model_input, resize_weights


@pytest.mark.parametrize("n_in,n_out", [(320, 224), (224, 224), (37, 64), (2880, 224), (5, 3)])
def test_resize_weights_rows_are_normalised_and_local(n_in, n_out):
    w = resize_weights(n_in, n_out)
    assert w.shape == (n_out, n_in)
    assert np.allclose(w.sum(axis=1), 1.0)
    assert (w >= 0).all()
    support = (w > 0).sum(axis=1)
    assert support.max() <= 2 * max(n_in / n_out, 1.0) + 2


def test_constant_image_stays_constant_and_identity_size_is_exact():
    flat = np.full((53, 37), 117.0)
    assert (preprocessing.to_model_input(flat, InputContract(size=32)) == 117).all()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32)).astype(np.float32)
    out = preprocessing.to_model_input(img, InputContract(size=32))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:, :, 0] == img).all() and (out[:, :, 0] == out[:, :, 2]).all()


def test_downscale_is_close_to_pillow_bilinear():
    """Same filter family as Pillow's antialiased bilinear; rounding may differ by one grey level."""
    rng = np.random.default_rng(1)
    smooth = Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).resize((300, 400), Image.BICUBIC)
    ours = preprocessing.to_model_input(np.asarray(smooth, np.float32), InputContract(size=64))[:, :, 0]
    pil = np.asarray(smooth.resize((64, 64), Image.BILINEAR))
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 2


def test_rounding_is_half_up():
    gray = np.array([[0.5, 1.49], [254.5, 300.0]])
    w = preprocessing.to_model_input(gray, InputContract(size=16))  # upsample of 2x2: check range only
    assert w.min() >= 0 and w.max() <= 255
    exact = preprocessing.to_model_input(np.full((16, 16), 2.5), InputContract(size=16))
    assert (exact == 3).all()


def test_training_and_runtime_paths_share_preprocessing(tmp_path):
    """load_batch (training, export calibration) and load_model_input (runtime) give identical bytes."""
    from fracture_edge.train.activations import load_split
    from fracture_edge.edge_runtime.dataset import Sample

    rng = np.random.default_rng(2)
    paths = []
    for i, (w, h) in enumerate([(300, 200), (45, 77), (64, 64)]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    contract = InputContract(size=48)
    pixels, kept, failures = load_batch(paths + [bad], contract)
    assert kept == [0, 1, 2] and failures and "bad.png" in failures[0][1]
    split = load_split("val", [Sample(p, "fractured", "val") for p in paths], contract)
    for i, p in enumerate(paths):
        single = load_model_input(p, contract)
        assert np.array_equal(single, pixels[i])
        assert np.array_equal(single, split.pixels[i])


def test_contract_round_trip_and_validation():
    c = InputContract(size=160)
    assert InputContract.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="between 16 and 1024"):
        InputContract(size=8)
    with pytest.raises(ValueError, match="unsupported input contract"):
        InputContract(size=64, fit="letterbox")


# ---- the banded resize against the dense formulation it replaced (kept here as the reference) ---------------

def dense_weights(n_in: int, n_out: int) -> np.ndarray:
    """resize_weights as it was: the whole (n_out, n_in) float64 matrix."""
    scale = n_in / n_out
    radius = max(scale, 1.0)
    centers = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
    positions = np.arange(n_in, dtype=np.float64) + 0.5
    weights = 1.0 - np.abs(positions[None, :] - centers[:, None]) / radius
    np.clip(weights, 0.0, None, out=weights)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def dense_apply_taps(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """apply_taps as it was: every row's taps in increasing input index, over the dense matrix."""
    n_out, n_in = weights.shape
    support = weights > 0
    first = support.argmax(axis=1)
    rows = np.arange(n_out)
    out = np.zeros((n_out, values.shape[1]))
    for tap in range(int(support.sum(axis=1).max())):
        index = first + tap
        inside = index < n_in
        index = np.where(inside, index, n_in - 1)
        out += np.where(inside, weights[rows, index], 0.0)[:, None] * values[index]
    return out


def dense_resize(gray: np.ndarray, size: int) -> np.ndarray:
    vertical = dense_apply_taps(gray.astype(np.float64), dense_weights(gray.shape[0], size))
    return dense_apply_taps(vertical.T, dense_weights(gray.shape[1], size)).T


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny weight chunks and column blocks, so that every image here is resized in many pieces."""
    monkeypatch.setattr(preprocessing, "WEIGHT_CHUNK_BYTES", 3000)
    monkeypatch.setattr(preprocessing, "BLOCK_VALUES", 5000)
    preprocessing.TAPS_CACHE.clear()
    yield
    preprocessing.TAPS_CACHE.clear()


def random_cases(count: int, seed: int = 25):
    rng = np.random.default_rng(seed)
    for i in range(count):
        long_side = int(rng.integers(1, 2400 if i % 4 else 9000))
        short = int(rng.integers(1, max(2, min(long_side, 400))))
        shape = (long_side, short) if i % 2 else (short, long_side)
        yield shape, int(rng.choice([16, 17, 31, 64, 224, 320, 321, 512]))


def test_banded_resize_is_bit_identical_to_the_dense_formulation(small_blocks):
    """60 random shapes (up to 9000 px long, down- and upscaling), half of them integer images (exact .5 ties)."""
    rng = np.random.default_rng(7)
    for i, (shape, size) in enumerate(random_cases(60)):
        gray = (rng.random(shape) * 255).astype(np.float32)
        if i % 2:
            gray = np.floor(gray)
        got = preprocessing.resize_gray(gray, size)
        assert got.dtype == np.float64 and np.array_equal(got, dense_resize(gray, size)), (shape, size)
        if i % 2:
            pixels = preprocessing.to_model_input(gray, InputContract(size=size))
            expected = np.clip(np.floor(dense_resize(gray, size) + 0.5), 0, 255).astype(np.uint8)
            assert np.array_equal(pixels[:, :, 0], expected)


@pytest.mark.parametrize("n_in, n_out", [(1, 16), (2, 1024), (16384, 16), (16384, 1024), (9999, 320), (321, 320),
                                         (2880, 224), (3001, 224), (5, 3), (37, 64)])
def test_banded_weights_expand_to_the_dense_matrix(small_blocks, n_in, n_out):
    assert np.array_equal(resize_weights(n_in, n_out), dense_weights(n_in, n_out))


def test_the_band_cache_is_bounded():
    preprocessing.TAPS_CACHE.clear()
    for width in range(15000, 15000 + 40 * 37, 37):
        preprocessing.resize_gray(np.zeros((3, width), np.float32), 16)
    cache = preprocessing.TAPS_CACHE
    assert len(cache) <= preprocessing.CACHE_ENTRIES and cache.nbytes <= preprocessing.CACHE_BYTES
    preprocessing.TAPS_CACHE.clear()
