"""Extra outputs of every artifact, beside the probability: a name-keyed table, one builder per output.

Each builder takes the Keras classifier and returns a tensor computed from its layers (sharing their
weights); `with_extra_outputs` returns a model whose first output is the classifier's own output
tensor, untouched, so the probability path of the converted graph is the same ops on the same
tensors. The bundle declares each extra output under output.extra.NAME (shape per image, meaning);
the runtime finds it among the artifact's outputs by that shape (edge_runtime/classifier.py).
To add one: write a builder, add it to EXTRA_OUTPUTS with its meaning. The TFLite artifacts are converted
from the extended Keras model; the ONNX ones are converted and quantized without the extra outputs, which
are then grafted onto the finished graph (onnx_graft.py, where each has an ONNX counterpart).

heatmap: DenseNet121 ends in global average pooling + one dense unit, so the class activation map
needs no gradients: the last feature map times the dense weights, plus the bias, per cell
(a 1x1 convolution). Its mean over the cells is exactly the logit.

features: the pooled feature vector (1,024 values for DenseNet121) that feeds the final Dense, for a head
fitted on the device (`fracture-edge adapt`, edge_runtime/adapt/). It is the global average pool's own
output tensor, not a second pool: no new op, the Dense reads exactly these values, and the int8 exports'
"ops after the last MEAN stay float" rule (int8_calibrate.classifier_ops, onnx_export.classifier_nodes)
still finds the classifier (a second MEAN could be the last one).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

HEATMAP = "heatmap"
FEATURES = "features"


@dataclass(frozen=True)
class ExtraOutput:
    name: str
    build: Callable[[object], object]      # Keras model -> output tensor (N, *shape)
    meaning: str


def _walk_head(model) -> tuple[object, object, object]:
    """(the tensor the last global average pool reads, that pool's output, the Dense layer producing the logit),
    found by walking back from the model's output through this model's own graph (a layer shared with another
    model, as stem_fold's copy shares its layers, has several inputs; only this graph's one is wanted)."""
    tensor, dense = model.outputs[0], None
    for _ in range(16):                  # Dense <- Dropout <- GAP: a few steps at most
        operation, node_index, _ = tensor._keras_history   # noqa: SLF001 (Keras' record of the producer)
        node = operation._inbound_nodes[node_index]          # noqa: SLF001
        kind = type(operation).__name__
        if kind == "GlobalAveragePooling2D" and dense is not None:
            return node.input_tensors[0], tensor, dense
        if kind == "Dense" and dense is None:
            dense = operation
        if len(node.input_tensors) != 1:
            break
        tensor = node.input_tensors[0]
    raise ValueError(f"model {model.name!r} does not end in global average pooling + Dense")


def classifier_head(model) -> tuple[object, object]:
    """(the tensor the last global average pool reads, the Dense layer producing the logit)."""
    feature_map, _, dense = _walk_head(model)
    return feature_map, dense


def build_heatmap(model):
    """Class activation map (N, h, w, 1): the last feature map through the final Dense as a 1x1 convolution."""
    import keras

    features, dense = classifier_head(model)
    kernel, bias = dense.get_weights()
    if kernel.shape[1] != 1:
        raise ValueError(f"{dense.name} has {kernel.shape[1]} units; the heatmap needs a single logit")
    conv = keras.layers.Conv2D(1, 1, name=HEATMAP, dtype="float32")
    out = conv(features)
    conv.set_weights([kernel.reshape(1, 1, -1, 1), bias])
    return out


def build_features(model):
    """Pooled features (N, channels): the global average pool's output, which the final Dense reads."""
    _, pooled, _ = _walk_head(model)
    return pooled


EXTRA_OUTPUTS: dict[str, ExtraOutput] = {
    HEATMAP: ExtraOutput(HEATMAP, build_heatmap,
                         "class activation map: the logit's share of each cell of the last feature map "
                         "(grid over the model input, row-major; its mean is the logit)"),
    FEATURES: ExtraOutput(FEATURES, build_features,
                          "pooled features: the global average pool's output that feeds the final Dense "
                          "(input of a head fitted on the device, fracture-edge adapt)"),
}


def with_extra_outputs(model, names: tuple[str, ...] = tuple(EXTRA_OUTPUTS)):
    """A Keras model with outputs [model.output, *extras]; the same model when names is empty."""
    import keras

    if not names:
        return model
    unknown = [n for n in names if n not in EXTRA_OUTPUTS]
    if unknown:
        raise ValueError(f"unknown extra output(s) {', '.join(unknown)}; valid: {', '.join(EXTRA_OUTPUTS)}")
    extras = [EXTRA_OUTPUTS[name].build(model) for name in names]
    return keras.Model(model.input, [model.output, *extras], name=model.name)


def declare_extra_outputs(bundle: dict, model,
                          names: tuple[str, ...] = tuple(EXTRA_OUTPUTS)) -> tuple[dict, tuple[str, ...]]:
    """(a copy of the bundle whose output.extra declares each extra output's per-image shape and meaning,
    the names declared). An output this model cannot give (not a GAP + Dense classifier) is left out."""
    import copy

    extra = {}
    for name in names:
        try:
            tensor = with_extra_outputs(model, (name,)).outputs[1]
        except (ValueError, AttributeError, IndexError) as exc:
            log.warning("no %s output in the artifacts: %s", name, exc)
            continue
        shape = [int(d) for d in tensor.shape[1:]]
        if len(shape) > 1 and shape[-1] == 1:
            shape = shape[:-1]                       # (h, w, 1) -> (h, w)
        if int(np.prod(shape)) <= 1:                 # e.g. a 1x1 map at 32 px: nothing to show, and the
            log.warning("no %s output: a single value per image at this input size", name)   # runtime
            continue                                 # could not tell it from the probability
        extra[name] = {"shape": shape, "meaning": EXTRA_OUTPUTS[name].meaning}
    bundle = copy.deepcopy(bundle)
    bundle["output"] = {**bundle["output"], "extra": extra}
    return bundle, tuple(extra)


def keras_outputs(model, pixels: np.ndarray, names: tuple[str, ...], batch: int = 16) -> dict[str, np.ndarray]:
    """Probabilities (key 'probability') and the named extra outputs of the Keras model, as one traced graph."""
    import tensorflow as tf

    extended = with_extra_outputs(model, names)
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    forward = tf.function(lambda x: extended(x, training=False), input_signature=[spec], reduce_retracing=True)
    parts: dict[str, list] = {"probability": [], **{n: [] for n in names}}
    for start in range(0, len(pixels), batch):
        outs = forward(pixels[start:start + batch].astype(np.float32))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        parts["probability"].append(np.asarray(outs[0]).reshape(-1).astype(np.float64))
        for name, out in zip(names, outs[1:]):
            value = np.asarray(out).astype(np.float64)
            parts[name].append(value.reshape(value.shape[:-1]) if value.shape[-1] == 1 else value)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
