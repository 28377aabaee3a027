"""Folding the input normalization into conv1 (export/stem_fold.py) on a tiny DenseNet121."""
from __future__ import annotations

import numpy as np
import pytest

from test_equalize import random_pixels, randomized_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folded():
    pytest.importorskip("tensorflow")
    from fracture_edge.export.stem_fold import fold_input_normalization

    model = randomized_model(2)
    before = [w.copy() for w in model.get_weights()]
    return model, fold_input_normalization(model), before


@pytest.mark.parametrize("kind", ["gray radiographs", "any RGB", "black and white extremes"])
def test_folded_model_is_float_equivalent(folded, kind):
    model, copy, _ = folded
    rng = np.random.default_rng(0)
    pixels = {"gray radiographs": random_pixels(6, 300),
              "any RGB": rng.integers(0, 256, (6, 32, 32, 3)),
              "black and white extremes": np.stack([np.zeros((32, 32, 3)), np.full((32, 32, 3), 255)])}[kind]
    x = pixels.astype(np.float32)
    ref, new = np.asarray(model(x)), np.asarray(copy(x))
    assert np.max(np.abs(new - ref)) <= 1e-5


def test_folded_model_has_no_normalization_and_a_four_channel_conv1(folded):
    model, copy, before = folded
    names = {layer.name for layer in copy.layers}
    assert "imagenet_normalization" not in names and "pixel_plane" in names
    assert tuple(copy.get_layer("conv1_conv").kernel.shape[2:]) == (4, 64)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))   # the original untouched


def test_int8_conv1_reads_the_exact_pixels(folded, tmp_path):
    """uint8 pixels and the 255-plane stay on a scale-1 grid up to conv1: no rounding before it."""
    from ai_edge_litert.interpreter import Interpreter

    from fracture_edge.export.int8_calibrate import calibrated_model, quantize_calibrated
    from fracture_edge.export.int8_census import int8_census
    from fracture_edge.export.tflite_export import export_saved_model

    path = tmp_path / "model_int8.tflite"
    path.write_bytes(quantize_calibrated(calibrated_model(export_saved_model(folded[1], tmp_path / "sm"),
                                                          random_pixels(8, 0))))
    interpreter = Interpreter(model_path=str(path))
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001
    first_conv = next(i for i, op in enumerate(ops) if op["op_name"] == "CONV_2D")
    assert [op["op_name"] for op in ops[:first_conv]] == ["QUANTIZE", "STRIDED_SLICE", "MAXIMUM",
                                                          "CONCATENATION", "PAD"]
    for op in ops[:first_conv]:
        assert tensors[op["outputs"][0]]["quantization"] == (1.0, -128), op["op_name"]
    assert int8_census(path)["integer_but_classifier"]


def test_a_model_without_the_normalization_is_refused():
    pytest.importorskip("tensorflow")
    import keras

    from fracture_edge.export.stem_fold import fold_input_normalization

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(ValueError, match="imagenet_normalization"):
        fold_input_normalization(model)
