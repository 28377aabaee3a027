"""Heatmaps without TensorFlow: the runtime's extra outputs, predict --heatmaps and the bundle's declaration."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "heatmap_models"
OLD_FIXTURES = Path(__file__).parent / "fixtures" / "models"


def bright_corner(shape=(120, 100)) -> np.ndarray:
    gray = np.full(shape, 30, np.uint8)
    gray[: shape[0] // 3, -shape[1] // 3:] = 230        # upper right
    return gray


@pytest.mark.parametrize("fmt", ["tflite-fp32", "tflite-int8", "onnx-fp32"])
def test_every_fixture_artifact_returns_probability_and_heatmap(fmt):
    from fracture_edge.edge_runtime.classifier import Classifier

    clf = Classifier(FIXTURES, format=fmt)
    pixels = np.zeros((3, 32, 32, 3), np.uint8)
    pixels[0, :10, 22:] = 255
    pixels[2] = 200
    probs, extra = clf.outputs(pixels, ("heatmap",))
    assert clf.extra_outputs == ("heatmap",) and extra["heatmap"].shape == (3, 30, 30)
    assert np.array_equal(probs, clf.predict_pixels(pixels))
    row, col = np.unravel_index(extra["heatmap"][0].argmax(), (30, 30))
    assert row < 10 and col >= 20
    if fmt != "tflite-int8":                  # the map's mean is the logit (GAP + Dense)
        np.testing.assert_allclose(extra["heatmap"].mean(axis=(1, 2)), np.log(probs / (1 - probs)), atol=1e-4)


@pytest.mark.parametrize("fmt", ["tflite-fp32", "tflite-int8", "onnx-fp32"])
def test_probability_of_the_heatmap_fixture_equals_the_one_output_fixture(fmt):
    """The same net with and without the heatmap branch: the probability is the same bits."""
    from fracture_edge.edge_runtime.classifier import Classifier

    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    before = Classifier(OLD_FIXTURES, format=fmt).predict_pixels(pixels)
    assert np.array_equal(Classifier(FIXTURES, format=fmt).predict_pixels(pixels), before)


def test_prediction_carries_the_heatmap_only_when_asked(tmp_path):
    from fracture_edge.edge_runtime.classifier import Classifier

    path = tmp_path / "x.png"
    Image.fromarray(bright_corner()).save(path)
    clf = Classifier(FIXTURES, format="tflite-fp32")
    assert clf.predict_file(path).heatmap is None
    with_map = clf.predict_file(path, heatmap=True)
    assert with_map.heatmap.shape == (30, 30) and with_map.probability == clf.predict_file(path).probability
    batch = clf.predict_files([path, tmp_path / "missing.png", path], heatmap=True)
    assert batch[0].heatmap.shape == (30, 30) and not hasattr(batch[1], "heatmap")


def test_predict_heatmaps_writes_one_overlay_per_image(tmp_path, capsys):
    from fracture_edge.edge_runtime.cli import main

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(bright_corner()).save(tmp_path / folder / "x.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "maps"
    code = main(["predict", str(FIXTURES), str(tmp_path / "a"), str(tmp_path / "b"), "--heatmaps", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and "broken.png" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["x-2.heatmap.png", "x.heatmap.png"]
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert sum(r["error"] is None for r in rows) == 2
    with Image.open(out / "x.heatmap.png") as picture:
        assert picture.mode == "RGB" and picture.width >= 100 and picture.height > 120   # the image + a caption band
        overlay = np.asarray(picture)[:120, :100].astype(int)
    assert overlay[10, 90, 0] > overlay[10, 90, 2] and overlay[100, 10, 2] > overlay[100, 10, 0]  # hot corner, cold rest


def test_predict_heatmaps_refuses_a_model_without_one(tmp_path, capsys):
    from fracture_edge.edge_runtime.cli import main

    Image.fromarray(bright_corner()).save(tmp_path / "x.png")
    code = main(["predict", str(OLD_FIXTURES), str(tmp_path / "x.png"), "--heatmaps", str(tmp_path / "maps")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no heatmap output" in err[0] and "re-export" in err[0]
    (tmp_path / "file").write_text("x")
    assert main(["predict", str(FIXTURES), str(tmp_path / "x.png"), "--heatmaps", str(tmp_path / "file")]) == 1
    assert "needs a folder" in capsys.readouterr().err


@pytest.mark.parametrize("extra, problem", [
    ({"heatmap": {"shape": [10, 10]}}, None),
    ({"heatmap": {"shape": [1]}}, "more than one value"),
    ({"heatmap": {"shape": [10, 10]}, "features": {"shape": [10, 10]}}, "finds outputs by shape"),
    ({"Heat Map": {"shape": [4, 4]}}, "lower-case"),
    ({"heatmap": [10, 10]}, "an object"),
    ({"heatmap": {"shape": [10, 10], "meaning": 3}}, "a string"),
])
def test_bundle_schema_checks_extra_outputs(extra, problem):
    from fracture_edge.edge_runtime.bundle_schema import bundle_problems

    bundle = json.loads((FIXTURES / "bundle.json").read_text())
    bundle["output"]["extra"] = extra
    problems = bundle_problems(bundle)
    assert (problems == []) if problem is None else any(problem in line for line in problems), problems


def test_a_second_extra_output_is_found_by_its_declared_shape(tmp_path):
    """Issue 15's pooled features would be declared the same way; an undeclared/absent one is simply not there."""
    from fracture_edge.edge_runtime.classifier import Classifier

    bundle = json.loads((FIXTURES / "bundle.json").read_text())
    bundle["output"]["extra"]["features"] = {"shape": [1024], "meaning": "absent from this model"}
    clf = Classifier(FIXTURES / "model_fp32.onnx", bundle=bundle)
    assert clf.extra_outputs == ("heatmap",)


def reference_overlay(gray: np.ndarray, grid: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The overlay as first written (whole-image float64 clip and round): the strip-wise one must match it."""
    from fracture_edge.edge_runtime import heatmap

    gray = np.clip(np.asarray(gray, np.float64), 0, 255)
    scale = min(1.0, heatmap.MAX_SIDE / max(gray.shape))
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    base = Image.fromarray(gray.round().astype(np.uint8), mode="L").resize(size, Image.BILINEAR).convert("RGB")
    heat = heatmap.colormap(heatmap.normalized(heatmap.upsampled(grid, *size)))
    return ((1 - alpha) * np.asarray(base, np.float64) + alpha * heat).round().astype(np.uint8)


@pytest.mark.parametrize("shape, dtype", [((1000, 1200), np.float32), ((3, 5), np.float64), ((2100, 7), np.float32),
                                          ((40, 3000), np.uint8), ((700, 640), np.float32)])
def test_the_strip_wise_overlay_is_the_same_picture(shape, dtype):
    from fracture_edge.edge_runtime.heatmap import overlay

    rng = np.random.default_rng(shape[0])
    gray = rng.uniform(-20, 280, shape).astype(dtype)
    gray.flat[:4] = (2.5, 3.5, 254.5, np.float32(100.49999))        # ties and near-ties round as before
    grid = rng.normal(size=(30, 30))
    assert np.array_equal(np.asarray(overlay(gray, grid)), reference_overlay(gray, grid))


def test_the_overlay_needs_about_one_byte_per_pixel_of_the_image():
    """It used to make two float64 copies of the whole image (16 bytes per pixel: 512 MB at 32 MP, over the
    runtime's 300 MB budget); now an 8-bit copy and one strip. Two sizes with the same overlay size (640 x 427):
    the difference of their peaks is what each pixel of the image costs."""
    import tracemalloc

    from fracture_edge.edge_runtime.heatmap import overlay

    def peak(shape) -> int:
        gray = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
        tracemalloc.start()
        try:
            overlay(gray, np.zeros((30, 30)))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak((1500, 1000)), peak((3000, 2000))
    per_pixel = (large - small) / (3000 * 2000 - 1500 * 1000)
    assert per_pixel <= 1.5, per_pixel
