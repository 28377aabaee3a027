"""A differentiable simulation of the full-integer int8 model, built from a Keras DenseNet's layers.

It replays the Keras graph with TensorFlow ops on the layers' own variables, and rounds where the
int8 TFLite/ONNX model rounds (per-tensor activations, per-channel symmetric weights, int8 affine
constants), so gradients can teach the float weights to survive int8 (export/qat.py). In float mode
it reproduces the Keras model; the classifier (Dense) stays float, as in the exported int8 models.

What is rounded, following the TFLite int8 graph that mlir_quantize makes of this model:
- Conv2D followed by its own BatchNormalization and ReLU: BN folded into the kernel, per-channel
  int8 kernel, output rounded after the ReLU (one fused CONV_2D);
- a standalone affine (pre-activation BatchNormalization, the in-graph ImageNet normalization):
  MUL by an int8 constant, rounded, ADD of an int8 constant (ReLU fused), rounded;
- every other op's output (3x3 convs, concatenations, pools, the global average) once.
Padding and max pooling keep their input's scale and add no rounding. A concatenation and an
average pool share one scale with their inputs (TFLite's int8 CONCATENATION and AVERAGE_POOL_2D
require it), so a whole dense block, from the transition before it to its last concat, is rounded
on one grid, set by the concat and pool outputs alone: the transition conv's wider output is
clipped to its pool's range (checked layer by layer against a converted model: same scales, same
relative error at every block).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

FLOAT, RECORD, QUANT = "float", "record", "quant"
SUPPORTED = ("InputLayer", "Rescaling", "ZeroPadding2D", "Conv2D", "BatchNormalization", "Activation",
             "MaxPooling2D", "AveragePooling2D", "Concatenate", "GlobalAveragePooling2D", "Dropout", "Dense")


class UnsupportedModel(ValueError):
    """The model has a layer the int8 simulation does not know (quantization-aware tuning is skipped)."""


@dataclass(frozen=True)
class Step:
    """One simulated op: its kind, the layers it uses, the names of its inputs, the name of its output."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    layers: tuple
    fused_relu: bool = False          # the only consumer is a ReLU, which rounds (fused into the op)


def inbound_names(layer) -> tuple[str, ...]:
    node = layer._inbound_nodes[0]  # noqa: SLF001 (functional graph structure)
    return tuple(t._keras_history.operation.name for t in node.input_tensors)  # noqa: SLF001


def is_relu(layer) -> bool:
    return type(layer).__name__ == "Activation" and getattr(layer.activation, "__name__", "") == "relu"


def build_plan(model) -> list[Step]:
    """The model's layers in execution order as simulation steps (Conv2D + its BN fused)."""
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    unknown = sorted({k for k in kinds.values() if k not in SUPPORTED})
    if unknown:
        raise UnsupportedModel(f"int8 simulation does not support layer type(s) {', '.join(unknown)}")
    inputs = {layer.name: () if kinds[layer.name] == "InputLayer" else inbound_names(layer) for layer in model.layers}
    consumers: dict[str, list[str]] = defaultdict(list)
    for name, sources in inputs.items():
        for source in sources:
            consumers[source].append(name)
    layers = {layer.name: layer for layer in model.layers}
    steps, fused = [], set()
    for layer in model.layers:
        name, kind = layer.name, kinds[layer.name]
        if name in fused:
            continue
        after = consumers[name]
        if kind == "Conv2D" and len(after) == 1 and kinds[after[0]] == "BatchNormalization":
            norm_after = consumers[after[0]]
            steps.append(Step("conv_bn", after[0], inputs[name], (layer, layers[after[0]]),
                              fused_relu=len(norm_after) == 1 and is_relu(layers[norm_after[0]])))
            fused.add(after[0])
        elif kind in ("Rescaling", "BatchNormalization"):
            relu_next = len(after) == 1 and is_relu(layers[after[0]])
            steps.append(Step("affine", name, inputs[name], (layer,), fused_relu=relu_next))
        elif kind == "Activation" and not is_relu(layer):
            raise UnsupportedModel(f"{name}: only ReLU activations are simulated")
        elif kind == "Dense" and after:
            raise UnsupportedModel(f"{name}: the Dense classifier must be the last layer")
        else:
            steps.append(Step(kind, name, inputs[name], (layer,)))
    if steps[-1].kind != "Dense":
        raise UnsupportedModel("the model must end in a Dense classifier")
    return steps


def scale_groups(steps: list[Step]) -> dict[str, str]:
    """Rounding key -> the key of the group sharing its scale (concats and average pools join their inputs)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    source: dict[str, str | None] = {}    # value name -> rounding key that set its scale
    for step in steps:
        ins = [source.get(n) for n in step.inputs]
        if step.kind in ("ZeroPadding2D", "MaxPooling2D", "Dropout"):
            source[step.name] = ins[0]
        elif step.kind in ("affine", "conv_bn") and step.fused_relu:
            source[step.name] = None          # rounded by the ReLU that follows
        else:
            source[step.name] = step.name
            if step.kind in ("Concatenate", "AveragePooling2D"):
                for key in ins:
                    if key is not None:
                        parent[find(key)] = find(step.name)
    return {key: find(key) for key in list(parent) + [k for k in source.values() if k]}


def affine_of(layer):
    """(a, b) with layer(x) == x * a + b per channel, as TensorFlow tensors on the layer's variables."""
    import tensorflow as tf

    if type(layer).__name__ == "Rescaling":
        return tf.constant(np.asarray(layer.scale, np.float32)), tf.constant(np.asarray(layer.offset, np.float32))
    inv = tf.math.rsqrt(tf.convert_to_tensor(layer.moving_variance) + layer.epsilon)
    a = inv * layer.gamma if layer.scale else inv
    b = (layer.beta if layer.center else 0.0) - tf.convert_to_tensor(layer.moving_mean) * a
    return a, b


def quantize_kernel(kernel):
    """Per-output-channel symmetric int8 (narrow range), as TFLite and onnxruntime quantize weights."""
    import tensorflow as tf

    axes = list(range(len(kernel.shape) - 1))
    peak = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), 1e-12))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, -peak, peak, num_bits=8,
                                                                    narrow_range=True)


def quantize_constant(values):
    """A per-tensor int8 constant (MUL/ADD operand): asymmetric over [min(v, 0), max(v, 0)]."""
    import tensorflow as tf

    low = tf.stop_gradient(tf.minimum(tf.reduce_min(values), 0.0))
    high = tf.stop_gradient(tf.maximum(tf.reduce_max(values), 0.0))
    return tf.quantization.fake_quant_with_min_max_vars(values, low, tf.maximum(high, low + 1e-12), num_bits=8)


class Int8Simulation:
    """forward(x, mode) -> (pooled features, logit); ranges recorded with mode=RECORD, used with QUANT."""

    def __init__(self, model):
        self.model = model
        self.steps = build_plan(model)
        self.groups = scale_groups(self.steps)
        self.ranges: dict[str, tuple[float, float]] = {}   # rounding key -> (min, max), groups merged

    def record_ranges(self, pixels: np.ndarray, batch: int = 8) -> None:
        """Per-tensor min/max of every rounded tensor over pixels (the calibrator's MinMax, float model)."""
        from .tflite_export import pin_input_range

        pixels, self.ranges = pin_input_range(pixels), {}   # as the converter's calibration sees them
        for start in range(0, len(pixels), batch):
            self.forward(np.asarray(pixels[start:start + batch], np.float32), RECORD)
        setters = {step.name for step in self.steps if step.kind in ("Concatenate", "AveragePooling2D")}
        merged: dict[str, tuple[float, float]] = {}
        for key, (low, high) in self.ranges.items():
            group = self.groups.get(key, key)
            if key not in setters and group in setters:
                continue                      # a concat's or pool's input: rounded on the output's grid
            old = merged.get(group, (np.inf, -np.inf))
            merged[group] = (min(old[0], low), max(old[1], high))
        self.ranges = {key: merged[self.groups.get(key, key)] for key in self.ranges}

    def trainable_variables(self) -> list:
        """Kernels, BN gamma/beta and the classifier: what quantization-aware tuning may change."""
        out = []
        for step in self.steps:
            for layer in step.layers:
                kind = type(layer).__name__
                if kind in ("Conv2D", "Dense"):
                    out += [v for v in (layer.kernel, getattr(layer, "bias", None)) if v is not None]
                elif kind == "BatchNormalization":
                    out += [v for v in (layer.gamma if layer.scale else None,
                                        layer.beta if layer.center else None) if v is not None]
        return out

    def _round(self, x, key: str, mode: str):
        import tensorflow as tf

        if mode == RECORD:
            low, high = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            old = self.ranges.get(key, (np.inf, -np.inf))
            self.ranges[key] = (min(old[0], low), max(old[1], high))
            return x
        if mode == QUANT:
            low, high = self.ranges[key]
            return tf.quantization.fake_quant_with_min_max_vars(x, min(low, 0.0), max(high, low + 1e-6), num_bits=8)
        return x

    def forward(self, x, mode: str = FLOAT):
        import tensorflow as tf

        values: dict = {}
        quant = mode == QUANT
        for step in self.steps:
            args = [values[n] for n in step.inputs]
            layer = step.layers[0]
            if step.kind == "InputLayer":
                out = tf.convert_to_tensor(x, tf.float32)
            elif step.kind == "affine":
                a, b = affine_of(layer)
                if quant:
                    a, b = quantize_constant(a), quantize_constant(b)
                out = self._round(args[0] * a, step.name + "/mul", mode) + b
                out = out if step.fused_relu else self._round(out, step.name, mode)  # else the ReLU rounds
            elif step.kind == "conv_bn":
                conv, norm = step.layers
                a, b = affine_of(norm)
                kernel = conv.kernel * a
                bias = (conv.bias * a if conv.use_bias else 0.0) + b
                out = self._conv(args[0], conv, quantize_kernel(kernel) if quant else kernel) + bias
                out = out if step.fused_relu else self._round(out, step.name, mode)
            elif step.kind == "Conv2D":
                kernel = quantize_kernel(layer.kernel) if quant else layer.kernel
                out = self._conv(args[0], layer, kernel)
                out = self._round(out + layer.bias if layer.use_bias else out, step.name, mode)
            elif step.kind == "Activation":
                out = self._round(tf.nn.relu(args[0]), step.name, mode)
            elif step.kind == "ZeroPadding2D":
                (top, bottom), (left, right) = layer.padding
                out = tf.pad(args[0], [[0, 0], [top, bottom], [left, right], [0, 0]])
            elif step.kind == "MaxPooling2D":
                out = tf.nn.max_pool2d(args[0], layer.pool_size, layer.strides, layer.padding.upper())
            elif step.kind == "AveragePooling2D":
                out = self._round(tf.nn.avg_pool2d(args[0], layer.pool_size, layer.strides, layer.padding.upper()),
                                  step.name, mode)
            elif step.kind == "Concatenate":
                out = self._round(tf.concat(args, axis=-1), step.name, mode)
            elif step.kind == "GlobalAveragePooling2D":
                out = self._round(tf.reduce_mean(args[0], axis=(1, 2)), step.name, mode)
            elif step.kind == "Dropout":
                out = args[0]
            else:  # Dense: the float classifier; its logit, before the sigmoid
                features = args[0]
                logit = tf.matmul(features, layer.kernel) + (layer.bias if layer.use_bias else 0.0)
                return features, tf.reshape(logit, (-1,))
            values[step.name] = out
        raise UnsupportedModel("no Dense classifier reached")

    @staticmethod
    def _conv(x, layer, kernel):
        import tensorflow as tf

        if tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
            raise UnsupportedModel(f"{layer.name}: dilated or grouped convolutions are not simulated")
        return tf.nn.conv2d(x, kernel, strides=[1, *layer.strides, 1], padding=layer.padding.upper())
