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
