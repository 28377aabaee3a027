"""Classifier on the tiny fixture models: formats, batching, quantization, thresholds, integrity, missing runtimes."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.edge_runtime.artifacts import ArtifactMismatchError
from fracture_edge.edge_runtime.backends import TensorSpec, dequantize, quantize
from fracture_edge.edge_runtime.bundle import BundleError, load_bundle
from fracture_edge.edge_runtime.classifier import Classifier, FileFailure, Prediction
from fracture_edge.edge_runtime.errors import FractureEdgeError, MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "models"
LEVELS = (0, 40, 90, 128, 170, 220, 255)

# (id, model argument relative to FIXTURES, format, expected format name)
MODELS = [
    ("run-default", ".", None, "tflite-int8"),
    ("run-fp32", ".", "tflite-fp32", "tflite-fp32"),
    ("run-onnx", ".", "onnx-fp32", "onnx-fp32"),
    ("bundle-json", "bundle.json", "tflite-fp32", "tflite-fp32"),
    ("lone-int8", "model_int8.tflite", None, "tflite-int8"),
    ("lone-onnx", "model_fp32.onnx", None, "onnx-fp32"),
]


def fixture_script():
    """scripts/make_fixture_models.py as a module (its numpy reference net needs no TensorFlow)."""
    spec = importlib.util.spec_from_file_location("make_fixture_models", ROOT / "scripts" / "make_fixture_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat_images(levels=LEVELS, size: int = 32) -> np.ndarray:
    return np.stack([np.full((size, size, 3), v, np.uint8) for v in levels])


def textured_images(n: int = 6, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(20, 235, n)[:, None, None, None]
    return np.clip(base + rng.normal(0, 30, (n, 32, 32, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def run_copy(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES, tmp_path / "run"))


@pytest.mark.parametrize("name, model, fmt, expected", MODELS, ids=[m[0] for m in MODELS])
def test_loads_every_kind_of_model_argument(name, model, fmt, expected):
    clf = Classifier(FIXTURES / model, format=fmt, num_threads=1)
    assert clf.format.name == expected and clf.contract.size == 32
    assert clf.runtime.split()[0] in ("ai-edge-litert", "tflite-runtime", "tensorflow", "onnxruntime")
    probs = clf.predict_pixels(flat_images())
    assert probs.shape == (len(LEVELS),) and probs.dtype == np.float64
    assert np.all((probs >= 0) & (probs <= 1))
    assert np.all(np.diff(probs) >= -1e-6) and probs[-1] - probs[0] > 0.8  # brighter -> more "fractured"


@pytest.mark.parametrize("fmt", ["tflite-fp32", "onnx-fp32"])
def test_float_models_match_the_numpy_reference(fmt):
    script = fixture_script()
    pixels = textured_images()
    expected = script.reference_probs(pixels, script.make_weights())[:, 0]
    np.testing.assert_allclose(Classifier(FIXTURES, format=fmt).predict_pixels(pixels), expected, atol=1e-5)


def test_int8_agrees_with_float_within_quantization_error():
    pixels = np.concatenate([flat_images(), textured_images()])
    fp32 = Classifier(FIXTURES, format="tflite-fp32").predict_pixels(pixels)
    int8 = Classifier(FIXTURES, format="tflite-int8")
    assert int8.input_details.dtype == np.uint8 and int8.input_details.scale > 0
    assert np.max(np.abs(int8.predict_pixels(pixels) - fp32)) < 0.05


@pytest.mark.parametrize("fmt", ["tflite-int8", "tflite-fp32", "onnx-fp32"])
def test_batch_equals_one_by_one(fmt):
    clf = Classifier(FIXTURES, format=fmt)
    pixels = textured_images(5)
    batch = clf.predict_pixels(pixels)
    single = np.array([clf.predict_pixels(p)[0] for p in pixels])  # (S,S,3) is accepted as a batch of one
    np.testing.assert_allclose(batch, single, atol=1e-6)
    assert clf.predict_pixels(pixels[:0]).shape == (0,)


@pytest.mark.parametrize("spec, values", [
    (TensorSpec("x", (1,), np.dtype(np.uint8), 0.5, 10), np.array([0.0, 1.0, 50.0, 122.5])),
    (TensorSpec("x", (1,), np.dtype(np.int8), 2.0, -128), np.array([0.0, 100.0, 254.0, 510.0])),
    (TensorSpec("x", (1,), np.dtype(np.uint8), 1.0, 0), np.array([0.0, 17.0, 255.0])),
])
def test_quantization_round_trip(spec, values):
    q = quantize(values, spec)
    assert q.dtype == spec.dtype
    np.testing.assert_allclose(dequantize(q, spec), values, atol=spec.scale / 2 + 1e-9)


@pytest.mark.parametrize("spec, values, expected", [
    (TensorSpec("x", (1,), np.dtype(np.uint8), 0.5, 10), np.array([-100.0, 1000.0]), [0, 255]),  # clipped
    (TensorSpec("x", (1,), np.dtype(np.float32)), np.array([1.25]), [1.25]),                     # float: as is
    (TensorSpec("x", (1,), np.dtype(np.uint8)), np.array([7.0, 300.0]), [7, 255]),              # scale 0: raw
])
def test_quantize_clips_and_passes_through(spec, values, expected):
    np.testing.assert_array_equal(quantize(values, spec), expected)


def test_raw_pixel_quantize_rounds_and_clips_like_the_general_path():
    spec = TensorSpec("x", (1,), np.dtype(np.uint8), 1.0, 0)
    values = np.array([-3.0, 0.4, 0.5, 1.5, 2.5, 127.49, 254.6, 255.0, 400.0], dtype=np.float32)
    general = np.clip(np.round(values.astype(np.float64)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(quantize(values, spec), general)
    np.testing.assert_array_equal(quantize(values, spec), [0, 0, 0, 2, 2, 127, 255, 255, 255])


@pytest.mark.parametrize("choice, name, value", [
    (None, "balanced", 0.5), ("balanced", "balanced", 0.5), ("screening", "screening", 0.25),
    ("0.7", "custom", 0.7), (0.1, "custom", 0.1),
])
def test_threshold_names(choice, name, value):
    clf = Classifier(FIXTURES, threshold=choice)
    assert (clf.threshold_name, clf.threshold) == (name, value)
    probability = clf.predict_pixels(flat_images((128,)))[0]
    assert clf.label_for(probability) == ("fractured" if probability >= value else "not_fractured")


@pytest.mark.parametrize("choice", ["strict", "1.5", "-0.1"])
def test_bad_threshold_lists_the_choices(choice):
    with pytest.raises(ValueError, match="threshold"):
        Classifier(FIXTURES, threshold=choice)


def test_predict_files_keeps_order_and_reports_bad_files(tmp_path):
    bright, dark, bad = tmp_path / "bright.png", tmp_path / "dark.jpg", tmp_path / "bad.png"
    Image.new("L", (40, 50), 230).save(bright)
    Image.new("L", (40, 50), 15).save(dark)
    bad.write_text("not an image")
    results = Classifier(FIXTURES).predict_files([bright, bad, dark], batch_size=2)
    assert [type(r) for r in results] == [Prediction, FileFailure, Prediction]
    assert results[0].label == "fractured" and results[2].label == "not_fractured"
    assert results[1].path == str(bad) and "not an image" in results[1].reason and str(bad) not in results[1].reason
    single = Classifier(FIXTURES).predict_file(bright)
    assert single.probability == pytest.approx(results[0].probability) and single.latency_ms >= 0


@pytest.mark.parametrize("damage", ["append", "flip", "truncate"])
def test_artifact_that_differs_from_the_bundle_is_refused(run_copy, damage):
    path = run_copy / "model_int8.tflite"
    data = bytearray(path.read_bytes())
    if damage == "append":
        data += b"\0"
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) - 100]
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactMismatchError, match="does not match its bundle.json"):
        Classifier(run_copy)
    with pytest.raises(ArtifactMismatchError, match="does not match its bundle.json"):
        Classifier(path, bundle=load_bundle(run_copy))  # an explicit bundle is checked too


def test_missing_model_and_missing_artifact(run_copy):
    with pytest.raises(FractureEdgeError, match="model not found"):
        Classifier(run_copy / "nope")
    (run_copy / "model_fp32.onnx").unlink()
    with pytest.raises(FractureEdgeError, match="not in"):
        Classifier(run_copy, format="onnx-fp32")
    with pytest.raises(ValueError, match="valid formats"):
        Classifier(run_copy, format="tflite-int4")


def test_bundle_that_contradicts_the_model_is_refused():
    bundle = load_bundle(FIXTURES)
    bundle["input"] = {**bundle["input"], "size": 64}
    with pytest.raises(BundleError, match="does not match"):
        Classifier(FIXTURES / "model_fp32.tflite", bundle=bundle)


@pytest.mark.parametrize("fmt, hidden, extra", [
    ("tflite-int8", ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                     "tflite_runtime.interpreter", "tensorflow"), "fracture-edge[litert]"),
    ("onnx-fp32", ("onnxruntime",), "fracture-edge[onnx]"),
])
def test_missing_runtime_names_the_extra(monkeypatch, fmt, hidden, extra):
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError; find_spec returns None
    with pytest.raises(MissingExtraError) as info:
        Classifier(FIXTURES, format=fmt)
    assert extra in str(info.value) and "\n" not in str(info.value)


def test_the_probability_is_told_from_a_one_cell_heatmap_by_its_rank():
    """At a small input size the heatmap is a 1x1 map: one value per image, like the probability."""
    from fracture_edge.edge_runtime.backends import TensorSpec, probability_index

    f32 = np.dtype(np.float32)
    heatmap, prob = TensorSpec("heatmap", (1, 1, 1, 1), f32), TensorSpec("prob", (1, 1), f32)
    assert probability_index((heatmap, prob)) == 1
    assert probability_index((prob, heatmap)) == 0
    assert probability_index((TensorSpec("map", (1, 7, 7, 1), f32), prob)) == 1
    assert probability_index((prob,)) == 0
