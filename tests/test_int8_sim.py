"""The int8 simulation (export/int8_sim.py) and quantization-aware tuning (export/qat.py) on a tiny DenseNet121."""
from __future__ import annotations

import numpy as np
import pytest

from test_equalize import SIZE, random_pixels, randomized_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_and_pixels():
    pytest.importorskip("tensorflow")
    return randomized_model(1), random_pixels(48, 100)


def keras_logit(model, pixels) -> np.ndarray:
    import keras

    features = keras.Model(model.input, model.get_layer("avg_pool").output)(pixels.astype(np.float32))
    dense = model.get_layer("fracture_prob")
    return (np.asarray(features) @ np.asarray(dense.kernel) + np.asarray(dense.bias)).ravel()


def test_float_simulation_reproduces_the_keras_model(model_and_pixels):
    from fracture_edge.export.int8_sim import FLOAT, Int8Simulation

    model, pixels = model_and_pixels
    _, logit = Int8Simulation(model).forward(pixels[:8].astype(np.float32), FLOAT)
    np.testing.assert_allclose(np.asarray(logit), keras_logit(model, pixels[:8]), atol=1e-4)


def test_each_dense_block_is_rounded_on_one_scale(model_and_pixels):
    from fracture_edge.export.int8_sim import Int8Simulation

    sim = Int8Simulation(model_and_pixels[0])
    sim.record_ranges(model_and_pixels[1][:16])
    block2 = {k for k in sim.ranges if k.startswith("conv2_") and k.endswith(("_concat", "_2_conv"))} | {"conv1_relu"}
    assert len(block2) == 13 and len({sim.ranges[k] for k in block2}) == 1
    assert sim.ranges["pool2_conv"] == sim.ranges["pool2_pool"] == sim.ranges["conv3_block1_concat"]
    assert sim.ranges["conv2_block1_1_relu"] != sim.ranges["conv1_relu"]      # a ReLU keeps its own


def test_quantized_simulation_moves_the_logit_like_converted_int8(model_and_pixels, tmp_path):
    """The simulated int8 error is as large as the converted model's (per image, rounding cascades differ)."""
    import tensorflow as tf

    from ai_edge_litert.interpreter import Interpreter

    from fracture_edge.export.int8_calibrate import calibrated_model, quantize_calibrated
    from fracture_edge.export.int8_sim import FLOAT, QUANT, Int8Simulation
    from fracture_edge.export.tflite_export import export_saved_model

    model, pixels = model_and_pixels
    calib, test = pixels[:16], pixels[16:]
    interpreter = Interpreter(model_content=quantize_calibrated(
        calibrated_model(export_saved_model(model, tmp_path / "sm"), calib)))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], test.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], test)
    interpreter.invoke()
    probs = np.clip(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).ravel(), 1e-6, 1 - 1e-6)
    tflite_error = np.log(probs / (1 - probs)) - keras_logit(model, test)
    sim = Int8Simulation(model)
    sim.record_ranges(calib)
    x = tf.constant(test.astype(np.float32))
    sim_error = np.asarray(sim.forward(x, QUANT)[1]) - np.asarray(sim.forward(x, FLOAT)[1])
    assert np.std(tflite_error) > 0.01                     # int8 does move the logit here
    assert 0.7 < np.std(sim_error) / np.std(tflite_error) < 1.4


def test_step_scales_follow_each_channels_magnitude():
    from fracture_edge.export.qat import step_scales

    kernel = np.zeros((1, 1, 2, 3), np.float32)
    kernel[..., 0], kernel[..., 1] = [1.0, -4.0], [0.01, 0.0]
    gamma = np.array([2.0, 0.0, -0.5], np.float32)
    k_scale, g_scale = step_scales([kernel, gamma])
    assert k_scale.shape == (1, 1, 1, 3) and k_scale.ravel().tolist() == pytest.approx([4.0, 0.01, 0.004])
    assert g_scale.tolist() == pytest.approx([2.0, 0.002, 0.5])


def test_tuning_changes_the_int8_copy_and_never_the_reference(model_and_pixels):
    """Plumbing of the experimental tuning: steps, held-out measurement, reference untouched."""
    import keras

    from fracture_edge.export.qat import QatOptions, tune_for_int8

    model, pixels = model_and_pixels
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    before = [w.copy() for w in model.get_weights()]
    result = tune_for_int8(copy, model, pixels[:16], pixels[16:],
                           QatOptions(images=32, holdout=8, batch=4, learning_rate=1e-5))
    assert result.steps == 6 and result.images == 24 and result.seconds > 0
    assert np.isfinite([result.rmse_before, result.rmse_after, result.loss_first, result.loss_last]).all()
    assert result.facts()["qat_steps"] == 6 and "distilled from model.keras" in result.facts()["method"]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(before, copy.get_weights()))
