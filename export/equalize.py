"""Channel equalization: float-exact rescaling of a DenseNet's channels so that int8 loses less.

Two passes on a copy of the Keras model (the caller's model is never touched):
1. Concat channels. A dense block concatenates feature maps whose per-channel ranges differ by
   orders of magnitude (on radiographs many stem channels are nearly constant), and int8
   CONCATENATION gives the whole block one scale. Each channel has one producer (conv1_bn for block
   2, the transition `pool{b-1}_conv` for later blocks, a dense layer's `conv{b}_block{j}_2_conv`)
   and is only read by batch norms: multiply it by s at the producer (ReLU, zero padding, max and
   average pooling commute with s > 0) and divide it out in every consumer (gamma / s, mean * s).
   Signed channels (the convolutions') are also shifted to start at 0: a bias d added at the
   producer (the copy's convolutions get one; average pooling commutes with it) and subtracted in
   every consumer (mean + d). The block's shared range becomes [0, 1] instead of [-1, 1]: a grid
   twice as fine for every channel, the stem's ReLU outputs included (measured: the stem's
   rounding was the largest single source of int8 logit noise on FracAtlas).
2. BN -> ReLU -> conv. Each ReLU output is one per-tensor int8 tensor too: scale the batch norm's
   output channel by t (gamma, beta * t) and divide the next layer's input weights by t. t is the
   square root of the full equalizer, trading activation against weight precision (measured).
   The final BN -> ReLU (pooled into the `features` output) is left as it is: that output keeps the float
   model's scale in every format.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CONCAT = re.compile(r"^conv(\d+)_block(\d+)_concat$")
PRODUCER = re.compile(r"^(conv\d+_block\d+_2_conv|pool\d+_conv)$")   # convolutions feeding dense blocks
GROWTH = 32                  # channels added by each dense layer of DenseNet121
MAX_SCALE = 1000.0           # bound on s and 1/s: nearly dead channels are not blown up
RELU_POWER = 0.5             # t = s ** 0.5 for BN -> ReLU -> conv (1.0 made int8 worse on FracAtlas)
BATCH = 8


@dataclass(frozen=True)
class Block:
    """One dense block: its number, its dense layers, and the channels of its input."""

    number: int
    layers: int
    input_channels: int


@dataclass(frozen=True)
class EqualizationResult:
    """The equalized copy and what was done to it (for the export report)."""

    model: object
    concat_channels: int        # dense-block channels rescaled
    relu_channels: int          # BN -> ReLU channels rescaled
    skipped: str = ""           # why nothing was equalized (a model without DenseNet dense blocks)

    def facts(self) -> dict:
        if self.skipped:
            return {"equalized": False, "equalization_skipped": self.skipped}
        return {"equalized": True, "equalized_concat_channels": self.concat_channels,
                "equalized_relu_channels": self.relu_channels}


def dense_blocks(model) -> list[Block]:
    """The dense blocks of a Keras DenseNet, found from its `conv{b}_block{j}_concat` layer names."""
    layers: dict[int, int] = {}
    for layer in model.layers:
        match = CONCAT.match(layer.name)
        if match:
            layers[int(match.group(1))] = max(layers.get(int(match.group(1)), 0), int(match.group(2)))
    return [Block(b, layers[b], int(model.get_layer(f"conv{b}_block1_concat").output.shape[-1]) - GROWTH)
            for b in sorted(layers)]


def relu_chains(model) -> list[tuple[str, str, str]]:
    """(batch norm, relu, next convolution) for every BN -> ReLU -> conv inside the backbone.

    Not the final BN -> ReLU -> GAP -> Dense: its pooled output is the artifacts' `features` output, which the
    site model (fitted on the float model's features) reads in every format; rescaling it by t (and the Dense by
    1/t) kept the probability exact but made the full-integer files' features t * features, so every home image
    was flagged (measured 2026-12-06, docs/site-check.md)."""
    names = {layer.name for layer in model.layers}
    chains = []
    for relu in sorted(n for n in names if re.fullmatch(r"(conv\d+_block\d+_[01]_|pool\d+_)relu", n)):
        stem = relu[:-len("relu")]
        if stem.endswith(("_0_", "_1_")):
            target = f"{stem[:-2]}{int(stem[-2]) + 1}_conv"
        else:
            target = stem + "conv"
        if stem + "bn" in names and target in names:
            chains.append((stem + "bn", relu, target))
    return chains


def channel_reductions(model, names: list[str], pixels: np.ndarray, ops: tuple[str, ...]) -> list[list[np.ndarray]]:
    """Per-channel reductions ('max_abs', 'min', 'max') of the named layers' outputs, BATCH images at a time.

    The probe runs as a traced graph that returns only the per-channel vectors: called eagerly, a Keras
    functional model keeps every layer output of the batch alive (4.4 GB for 8 images at 320 px, measured).
    """
    import keras
    import tensorflow as tf

    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    reduce = {"max_abs": lambda t: tf.reduce_max(tf.abs(t), axis=(0, 1, 2)),
              "min": lambda t: tf.reduce_min(t, axis=(0, 1, 2)), "max": lambda t: tf.reduce_max(t, axis=(0, 1, 2))}

    @tf.function(input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    def run(x):
        outputs = probe(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [[reduce[op](out) for op in ops] for out in outputs]

    results: list[list[np.ndarray]] | None = None
    merge = {"max_abs": np.maximum, "min": np.minimum, "max": np.maximum}
    for start in range(0, len(pixels), BATCH):
        batch = [[np.asarray(v, np.float64) for v in per_layer] for per_layer in run(pixels[start:start + BATCH]
                                                                                      .astype(np.float32))]
        results = batch if results is None else [[merge[op](old, new) for op, old, new in zip(ops, a, b)]
                                                 for a, b in zip(results, batch)]
    return results


def channel_maxima(model, names: list[str], pixels: np.ndarray) -> list[np.ndarray]:
    """Per-channel max |activation| of the named layers' outputs over the calibration images."""
    return [per_layer[0] for per_layer in channel_reductions(model, names, pixels, ("max_abs",))]


def channel_extrema(model, names: list[str], pixels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-channel (min, max) of the named layers' outputs over the calibration images."""
    return [(low, high) for low, high in channel_reductions(model, names, pixels, ("min", "max"))]


def channel_scales(maxima: np.ndarray, power: float = 1.0) -> np.ndarray:
    """s_c = (1 / max|x_c|) ** power, bounded; dead channels keep s = 1."""
    scales = np.ones_like(maxima, dtype=np.float64)
    alive = maxima > 0
    scales[alive] = np.clip(1.0 / maxima[alive], 1.0 / MAX_SCALE, MAX_SCALE) ** power
    return scales


def scale_outputs(layer, scales: np.ndarray) -> None:
    """Multiply a batch norm's or bias-free conv's output channels by scales."""
    if hasattr(layer, "gamma"):
        layer.gamma.assign(np.asarray(layer.gamma) * scales)
        layer.beta.assign(np.asarray(layer.beta) * scales)
        return
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(np.asarray(layer.bias) * scales)
    layer.kernel.assign(np.asarray(layer.kernel) * scales)


def unscale_inputs(layer, scales: np.ndarray) -> None:
    """Undo scaled inputs: batch norm (gamma / s, mean * s) or conv/dense kernel (input rows / s)."""
    if hasattr(layer, "gamma"):
        layer.gamma.assign(np.asarray(layer.gamma) / scales)
        layer.moving_mean.assign(np.asarray(layer.moving_mean) * scales)
        return
    kernel = np.asarray(layer.kernel)
    layer.kernel.assign(kernel / scales.reshape((-1, 1) if kernel.ndim == 2 else (1, 1, -1, 1)))


def shift_outputs(layer, shifts: np.ndarray) -> None:
    """Add shifts to a convolution's output channels (through its bias)."""
    if not np.any(shifts):
        return
    if getattr(layer, "bias", None) is None:
        raise ValueError(f"{layer.name} has no bias to shift its outputs with")
    layer.bias.assign(np.asarray(layer.bias) + shifts)


def unshift_inputs(layer, shifts: np.ndarray) -> None:
    """Undo shifted inputs of a batch norm: its moving mean moves with them."""
    layer.moving_mean.assign(np.asarray(layer.moving_mean) + shifts)


def equalize_block(model, block: Block, scales: np.ndarray, shifts: np.ndarray, last_block: bool) -> None:
    """Shift and scale every channel of a dense block at its producer and compensate in every consumer BN."""
    b, c0 = block.number, block.input_channels
    stem = model.get_layer("conv1_bn" if b == 2 else f"pool{b - 1}_conv")
    if b == 2 and np.any(shifts[:c0]):
        raise ValueError("the stem's ReLU outputs cannot be shifted (they are never negative)")
    shift_outputs(stem, shifts[:c0])
    scale_outputs(stem, scales[:c0])
    for j in range(1, block.layers + 1):
        start = c0 + GROWTH * (j - 1)
        conv = model.get_layer(f"conv{b}_block{j}_2_conv")
        shift_outputs(conv, shifts[start:start + GROWTH])
        scale_outputs(conv, scales[start:start + GROWTH])
        consumer = model.get_layer(f"conv{b}_block{j}_0_bn")
        unshift_inputs(consumer, shifts[:start])
        unscale_inputs(consumer, scales[:start])
    consumer = model.get_layer("bn" if last_block else f"pool{b}_bn")
    unshift_inputs(consumer, shifts)
    unscale_inputs(consumer, scales)


def equalize_concats(model, pixels: np.ndarray) -> int:
    """Pass 1 (in place): every dense-block channel spans about [0, 1]; returns channels rescaled."""
    blocks = dense_blocks(model)
    if not blocks:
        raise ValueError("no DenseNet dense blocks (conv{b}_block{j}_concat layers) to equalize; "
                         "export with --no-equalize")
    extrema = channel_extrema(model, [f"conv{b.number}_block{b.layers}_concat" for b in blocks], pixels)
    count = 0
    for block, (low, high) in zip(blocks, extrema):
        shifts = np.maximum(-low, 0.0)            # signed channels start at 0
        scales = channel_scales(high + shifts)
        equalize_block(model, block, scales, shifts, block is blocks[-1])
        count += int(np.count_nonzero(scales != 1.0))
    return count


def with_producer_biases(model):
    """A copy of the model whose dense-block producing convolutions have a (zero) bias to shift with."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2D) and PRODUCER.match(layer.name) and not config["use_bias"]:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        source = model.get_layer(layer.name)
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias and not source.use_bias:
            layer.kernel.assign(np.asarray(source.kernel))
            layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
        elif source.weights:
            layer.set_weights(source.get_weights())
    return copy


def equalize_relus(model, pixels: np.ndarray, power: float = RELU_POWER) -> int:
    """Pass 2 (in place): BN -> ReLU outputs move toward one range; returns channels rescaled."""
    chains = relu_chains(model)
    maxima = channel_maxima(model, [relu for _, relu, _ in chains], pixels)
    count = 0
    for (bn, _, target), peak in zip(chains, maxima):
        scales = channel_scales(peak, power)
        scale_outputs(model.get_layer(bn), scales)
        unscale_inputs(model.get_layer(target), scales)
        count += int(np.count_nonzero(scales != 1.0))
    return count


def _unequalized(model) -> EqualizationResult:
    """A plain copy of a model without dense blocks (MobileNetV2: its ReLU6 clips at 6, so rescaling a channel
    before it would change the model): equalization is a DenseNet-only step, skipped with the reason logged."""
    import keras

    reason = "no DenseNet dense blocks (conv{b}_block{j}_concat layers): DenseNet-only step, int8 quantizes the model as is"
    log.info("channel equalization skipped: %s", reason)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return EqualizationResult(copy, 0, 0, skipped=reason)


def equalize_model(model, pixels: np.ndarray) -> EqualizationResult:
    """A float-equivalent copy of a DenseNet-based Keras model, equalized for int8 quantization."""
    import keras

    if len(pixels) == 0:
        raise ValueError("channel equalization needs calibration images")
    if not dense_blocks(model):
        return _unequalized(model)
    copy = with_producer_biases(model)
    concat_channels = equalize_concats(copy, pixels)
    relu_channels = equalize_relus(copy, pixels)
    log.info("equalization: %d dense-block and %d BN-ReLU channels rescaled", concat_channels, relu_channels)
    return EqualizationResult(copy, concat_channels, relu_channels)
