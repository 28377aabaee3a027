"""Bias correction of dynamic-range int8 weights: the mean shift formula against a brute-force convolution, and
the correction on a small converted model."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_edge.export.bias_correction import ConvGeometry, channel_shifts, patch_means


def brute_force_conv(x: np.ndarray, w: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """A plain convolution (TFLite weight layout [O, kh, kw, C]) of images x [N, H, W, C], TF padding rules."""
    (kh, kw), (sh, sw) = geometry.kernel, geometry.stride
    n, height, width, _ = x.shape
    if geometry.same:
        out_h, out_w = -(-height // sh), -(-width // sw)
        pad_h, pad_w = max((out_h - 1) * sh + kh - height, 0), max((out_w - 1) * sw + kw - width, 0)
    else:
        out_h, out_w, pad_h, pad_w = (height - kh) // sh + 1, (width - kw) // sw + 1, 0, 0
    xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = np.zeros((n, out_h, out_w, w.shape[0]))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            out[:, i, j] = np.einsum("nijc,oijc->no", patch, w)
    return out


@pytest.mark.parametrize("geometry", [
    ConvGeometry((1, 1), (1, 1), False), ConvGeometry((3, 3), (1, 1), True), ConvGeometry((3, 3), (2, 2), True),
    ConvGeometry((7, 7), (2, 2), False), ConvGeometry((3, 3), (2, 2), False), ConvGeometry((4, 2), (2, 1), True)])
def test_channel_shift_is_the_mean_output_of_the_weight_error(geometry):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2, size=(5, 11, 10, 3))           # positive inputs, as after a ReLU: a real mean
    delta = rng.normal(0, 0.01, size=(4, *geometry.kernel, 3))
    expected = brute_force_conv(x, delta, geometry).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(channel_shifts(delta, x.mean(axis=0), geometry), expected, rtol=1e-10, atol=1e-14)


def test_dense_shift_and_zero_padding_counts_as_zero():
    rng = np.random.default_rng(1)
    x, delta = rng.normal(1, 1, size=(6, 8)), rng.normal(0, 0.01, size=(3, 8))
    np.testing.assert_allclose(channel_shifts(delta, x.mean(axis=0), ConvGeometry()), (x @ delta.T).mean(axis=0))
    # a constant map: corner and edge positions of a SAME 3x3 kernel see padding, so the mean patch is below 1
    patch = patch_means(np.ones((4, 4, 1)), ConvGeometry((3, 3), (1, 1), True))
    assert patch[1, 1, 0] == 1.0 and patch[0, 0, 0] == pytest.approx(9 / 16) and patch[0, 1, 0] == pytest.approx(0.75)


def _tiny_models(tmp_path):
    """Float32 and dynamic-range TFLite conversions of a small conv net whose inputs have a positive mean."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 8))
    x = keras.layers.Conv2D(48, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(40)(x)
    model = keras.Model(inputs, outputs)
    for layer in model.layers:   # coarse weights: rounding them to int8 leaves a visible shift
        if layer.get_weights():
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel * (1 + 4 * (np.abs(kernel) > np.quantile(np.abs(kernel), 0.999))), *rest])
    saved = str(tmp_path / "saved")
    model.export(saved, verbose=False)

    def convert(dynamic: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if dynamic:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()

    return convert(False), convert(True)


def _outputs(model: bytes, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(pixels.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], pixels.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_correction_removes_the_mean_shift_of_a_converted_model(tmp_path):
    from fracture_edge.export.bias_correction import apply_shifts, bias_shifts, correct_biases
    from fracture_edge.export.dynamic_range import weighted_ops
    from tensorflow.lite.tools import flatbuffer_utils

    float_model, dynamic = _tiny_models(tmp_path)
    assert len(weighted_ops(flatbuffer_utils.convert_bytearray_to_object(dynamic))) == 3
    rng = np.random.default_rng(4)
    calibration, held_out = rng.uniform(0, 1, (64, 12, 12, 8)), rng.uniform(0, 1, (64, 12, 12, 8))
    shifts = bias_shifts(dynamic, float_model, calibration)
    assert len(shifts) == 3 and all(np.max(np.abs(s)) > 0 for s in shifts.values())
    corrected = apply_shifts(dynamic, shifts)
    reference = _outputs(float_model, held_out)
    bias_before = np.abs((_outputs(dynamic, held_out) - reference).mean(axis=0)).mean()
    bias_after = np.abs((_outputs(corrected, held_out) - reference).mean(axis=0)).mean()
    assert bias_after < 0.5 * bias_before

    model, result = correct_biases(dynamic, float_model, calibration, lambda m: _outputs(m, held_out), len(held_out))
    assert result.kept and result.rmse_corrected < result.rmse_uncorrected and model == corrected
    # the rule keeps the uncorrected model when the correction does not lower the error on the judging images
    model, result = correct_biases(dynamic, float_model, calibration, lambda m: _outputs(m, held_out) * 0, 1)
    assert not result.kept and model == dynamic
    assert set(result.to_dict()) >= {"kept", "logit_rmse_corrected", "logit_rmse_uncorrected"}
