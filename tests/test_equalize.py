"""Channel equalization before int8 (export/equalize.py) and calibration without buffer reuse
(export/int8_calibrate.py), on a tiny DenseNet121 (32 px) with randomized batch-norm statistics."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE = 32


def random_pixels(n: int, seed: int) -> np.ndarray:
    """Smooth radiograph-like uint8 RGB images (N, SIZE, SIZE, 3)."""
    from conftest import draw_synthetic_xray

    gray = np.stack([draw_synthetic_xray(seed + i, (SIZE, SIZE)) for i in range(n)])
    return np.repeat(gray[..., None], 3, axis=-1)


def randomized_model(seed: int = 0):
    """Tiny DenseNet121 whose batch norms have spread-out statistics (so a wrong compensation shows)."""
    import keras

    from fracture_edge.train.model import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(SIZE, weights="none")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = int(layer.gamma.shape[0])
            layer.gamma.assign(rng.uniform(0.2, 1.0, n))
            layer.beta.assign(rng.normal(0.0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.1, 2.0, n) ** 2)
    return model


@pytest.fixture(scope="module")
def equalized():
    """(original model, equalization result, calibration pixels, original weights)."""
    pytest.importorskip("tensorflow")
    from fracture_edge.export.equalize import equalize_model

    model = randomized_model()
    pixels = random_pixels(16, 0)
    before = [w.copy() for w in model.get_weights()]
    return model, equalize_model(model, pixels), pixels, before


def outputs(model, pixels, layer_name: str | None = None) -> np.ndarray:
    import keras

    probe = model if layer_name is None else keras.Model(model.input, model.get_layer(layer_name).output)
    return np.asarray(probe(pixels.astype(np.float32), training=False), dtype=np.float64)


def head_logit(model, pixels) -> np.ndarray:
    """The classifier's pre-sigmoid output (the probability may saturate on a random model)."""
    dense = model.get_layer("fracture_prob")
    return outputs(model, pixels, "avg_pool") @ np.asarray(dense.kernel) + np.asarray(dense.bias)


@pytest.mark.parametrize("point", ["conv3_block5_1_conv", "conv5_block16_1_conv", "logit", "probability"])
def test_equalized_copy_is_float_equivalent(equalized, point):
    model, result, _, _ = equalized
    images = random_pixels(8, 100)  # not the calibration images
    if point == "logit":
        ref, new = head_logit(model, images), head_logit(result.model, images)
    else:
        layer_name = None if point == "probability" else point
        ref, new = outputs(model, images, layer_name), outputs(result.model, images, layer_name)
    assert np.max(np.abs(new - ref)) <= 1e-5 * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("layer_name", ["conv2_block6_concat", "conv4_block24_concat"])
def test_dense_block_channels_differ_by_a_positive_scale_and_a_shift(equalized, layer_name):
    model, result, _, _ = equalized
    images = random_pixels(8, 100)
    ref = outputs(model, images, layer_name).reshape(-1, int(model.get_layer(layer_name).output.shape[-1]))
    new = outputs(result.model, images, layer_name).reshape(ref.shape)
    alive = ref.std(axis=0) > 1e-3 * ref.std(axis=0).max()
    slope = ((ref - ref.mean(0)) * (new - new.mean(0))).mean(0)[alive] / ref.var(0)[alive]
    residual = new[:, alive] - (new.mean(0)[alive] + slope * (ref[:, alive] - ref.mean(0)[alive]))
    assert np.all(slope > 0) and np.abs(residual).max() <= 1e-4 * np.abs(new).max()
    assert not np.allclose(ref, new)


def test_the_features_output_keeps_the_float_scale(equalized):
    """The final ReLU, pooled into the artifacts' features output, is the float model's, not rescaled."""
    model, result, _, _ = equalized
    images = random_pixels(8, 100)
    ref, new = outputs(model, images, "relu"), outputs(result.model, images, "relu")
    assert np.allclose(new, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("layer_name", ["pool2_relu", "pool4_relu"])
def test_rescaled_tensors_differ_by_a_positive_channel_factor(equalized, layer_name):
    model, result, _, _ = equalized
    images = random_pixels(8, 100)
    ref, new = outputs(model, images, layer_name), outputs(result.model, images, layer_name)
    ratio = np.where(np.abs(ref) > 1e-3 * np.abs(ref).max(), new / np.where(ref == 0, 1, ref), np.nan)
    per_channel = ratio.reshape(-1, ratio.shape[-1])
    per_channel = per_channel[:, ~np.all(np.isnan(per_channel), axis=0)]   # dead channels say nothing
    spread = np.nanmax(per_channel, axis=0) - np.nanmin(per_channel, axis=0)
    assert not np.allclose(ref, new)
    assert np.nanmin(per_channel) > 0 and np.nanmax(spread / np.nanmean(per_channel, axis=0)) < 1e-3


def test_equalization_rescales_channels_and_leaves_the_original_alone(equalized):
    model, result, _, before = equalized
    assert result.concat_channels > 0 and result.relu_channels > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(before, result.model.get_weights()))
    assert result.facts()["equalized"] is True


@pytest.mark.parametrize("layer_name", ["conv2_block6_concat", "conv3_block12_concat", "conv5_block16_concat"])
def test_dense_block_channels_share_one_range_after_equalization(equalized, layer_name):
    model, result, pixels, _ = equalized
    peak_before = np.abs(outputs(model, pixels, layer_name)).max(axis=(0, 1, 2))
    peak_after = np.abs(outputs(result.model, pixels, layer_name)).max(axis=(0, 1, 2))
    alive = peak_before > 0
    assert peak_before[alive].max() / peak_before[alive].min() > 2.0
    assert np.allclose(peak_after[alive], 1.0, rtol=1e-4)
    assert outputs(result.model, pixels, layer_name).min() >= -1e-3     # shifted to start at 0


def test_dense_blocks_of_signed_channels_are_shifted_to_start_at_zero(equalized):
    model, _, pixels, _ = equalized
    assert outputs(model, pixels, "conv3_block12_concat").min() < -0.1     # the original is signed

def test_relu_chains_cover_every_bn_relu_pair():
    pytest.importorskip("tensorflow")
    from fracture_edge.export.equalize import relu_chains

    chains = relu_chains(randomized_model())
    assert len(chains) == 2 * 58 + 3       # two per dense layer, three transitions; not the final bn (features)
    assert not [chain for chain in chains if chain[0] == "bn"]
    assert ("conv2_block1_1_bn", "conv2_block1_1_relu", "conv2_block1_2_conv") in chains
    assert ("pool3_bn", "pool3_relu", "pool3_conv") in chains


def test_calibration_records_concat_ranges_as_the_union_of_inputs(equalized):
    from fracture_edge.export.int8_calibrate import calibrated_model, concat_range_violations

    model, _, pixels, _ = equalized
    assert concat_range_violations(calibrated_model(model, pixels)) == []


@pytest.mark.parametrize("fmt", ["tflite-int8", "onnx-int8"])
def test_int8_export_of_the_equalized_model(tiny_export, fmt):
    """The shared tiny export (equalization on by default) quantized an equalized copy, and its artifact runs."""
    from export_fixture import SIZE as EXPORT_SIZE

    from fracture_edge.edge_runtime.classifier import Classifier

    row = next(r for r in tiny_export.rows if r.format == fmt)
    assert row.facts["equalized"] is True and row.facts["equalized_concat_channels"] > 0
    pixels = np.random.default_rng(200).integers(0, 256, (4, EXPORT_SIZE, EXPORT_SIZE, 3), dtype=np.uint8)
    probs = Classifier(tiny_export.run / row.file).predict_pixels(pixels)
    assert probs.shape == (4,) and np.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("argv, expected", [([], True), (["--no-equalize"], False)])
def test_no_equalize_flag(argv, expected, tmp_path):
    import argparse

    from fracture_edge.export import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["export", str(tmp_path), *argv])
    assert cli.options_from_args(args).equalize is expected
