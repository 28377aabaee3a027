"""Bias correction of a dynamic-range model's int8 weights (the rule in docs/fidelity-verdict.md).

Rounding a layer's weights to int8 moves the mean of each of its output channels by s_c = sum(dW_c * E[x]),
where dW = W_int8 - W_float and E[x] is the mean input patch of the layer (per kernel position and input
channel; a zero-padded border counts as 0). Subtracting s_c from the channel's float32 bias removes that shift.
E[x] is measured on the float32 conversion, on calibration training images; the correction is kept only if
it lowers the logit error against the float32 model on other (selection) images.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .dynamic_range import weighted_ops
from .tflite_graph import schema, text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvGeometry:
    """How a layer reads its input: kernel size, strides and padding (a dense layer is a 1 x 1 kernel)."""
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    same: bool = False


@dataclass(frozen=True)
class BiasCorrection:
    """The outcome of the rule: whether the correction is in the artifact, and the measurements that decided."""
    kept: bool
    rmse_corrected: float       # logit RMSE against the float32 model on the selection images
    rmse_uncorrected: float
    mean_images: int            # calibration training images E[x] was measured on
    rmse_images: int            # selection training images the RMSEs were measured on
    largest_shift: dict         # layer -> largest |s_c| over its output channels

    def to_dict(self) -> dict:
        ranked = sorted(self.largest_shift.items(), key=lambda kv: -kv[1])
        return {"kept": self.kept, "logit_rmse_corrected": round(self.rmse_corrected, 4),
                "logit_rmse_uncorrected": round(self.rmse_uncorrected, 4),
                "input_means_on": f"{self.mean_images} calibration training images",
                "rmse_on": f"{self.rmse_images} selection training images",
                "largest_shift_per_layer": {k: round(v, 5) for k, v in ranked}}


def patch_means(mean_map: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """Mean input patch (kh, kw, C) of a convolution over its output positions, given the mean input map
    (H, W, C); positions in the zero-padded border contribute 0, as they do in the convolution."""
    height, width, _ = mean_map.shape
    (kh, kw), (sh, sw) = geometry.kernel, geometry.stride
    if geometry.same:
        out_h, out_w = math.ceil(height / sh), math.ceil(width / sw)
        pad_h, pad_w = max((out_h - 1) * sh + kh - height, 0), max((out_w - 1) * sw + kw - width, 0)
    else:
        out_h, out_w, pad_h, pad_w = (height - kh) // sh + 1, (width - kw) // sw + 1, 0, 0
    padded = np.pad(mean_map, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = np.empty((kh, kw, mean_map.shape[2]), np.float64)
    for i in range(kh):
        for j in range(kw):
            window = padded[i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw]
            out[i, j] = window.mean(axis=(0, 1))
    return out


def channel_shifts(delta: np.ndarray, mean_input: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """s_c for weights `delta` in TFLite layout ([O, kh, kw, C] for a convolution, [O, C] for a dense layer)
    and the layer's mean input (a map [H, W, C], or a vector for a dense layer)."""
    if delta.ndim == 2:
        return delta.astype(np.float64) @ mean_input.reshape(-1).astype(np.float64)
    patch = patch_means(mean_input.reshape(mean_input.shape[-3:]).astype(np.float64), geometry)
    return np.einsum("oijc,ijc->o", delta.astype(np.float64), patch)


def _geometry(options, weights_shape) -> ConvGeometry | None:
    """The op's geometry, or None for one this rule does not cover (dilated convolutions)."""
    if len(weights_shape) == 2:
        return ConvGeometry()
    if getattr(options, "dilationHFactor", 1) != 1 or getattr(options, "dilationWFactor", 1) != 1:
        return None
    return ConvGeometry((int(weights_shape[1]), int(weights_shape[2])), (options.strideH, options.strideW),
                        options.padding == schema().Padding.SAME)


def _tensor_array(model, tensor) -> np.ndarray:
    types = schema().TensorType
    dtype = {types.INT8: np.int8, types.FLOAT32: np.float32}[tensor.type]
    return np.frombuffer(bytes(model.buffers[tensor.buffer].data), dtype).reshape(tuple(tensor.shape))


def input_means(float_model: bytes, pixels: np.ndarray, names: list[str],
                progress: Callable = lambda items, _label, _n: items) -> dict[str, np.ndarray]:
    """Mean over images (float64, batch axis dropped) of the float32 model's tensors called `names`."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=float_model, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1, *pixels.shape[1:]])
    interpreter.allocate_tensors()
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    sums = {name: None for name in names}
    for image in progress(pixels, "bias correction: mean layer inputs", len(pixels)):
        interpreter.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
        interpreter.invoke()
        for name in names:
            value = interpreter.get_tensor(index[name])[0].astype(np.float64)
            sums[name] = value if sums[name] is None else sums[name] + value
    return {name: total / len(pixels) for name, total in sums.items()}


def bias_shifts(dynamic: bytes, float_model: bytes, pixels: np.ndarray,
                progress: Callable = lambda items, _label, _n: items) -> dict[str, np.ndarray]:
    """s_c of every int8-weight op of `dynamic` (keyed by its output tensor name), E[x] measured on `pixels`
    through `float_model`, whose op with the same output holds the float weights."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(dynamic)
    reference = flatbuffer_utils.convert_bytearray_to_object(float_model)
    graph, ref_graph = model.subgraphs[0], reference.subgraphs[0]
    ref_by_output = {text(ref_graph.tensors[op.outputs[0]].name): op for op in ref_graph.operators}
    plans = {}   # op name -> (delta weights, geometry, name of its input in the float model)
    for weighted in weighted_ops(model):
        op, ref_op = graph.operators[weighted.index], ref_by_output.get(weighted.name)
        tensor = graph.tensors[op.inputs[1]]
        geometry = _geometry(op.builtinOptions, tensor.shape)
        if ref_op is None or geometry is None or tensor.quantization is None:
            log.debug("%s: no float counterpart or an unsupported geometry; not corrected", weighted.name)
            continue
        scale = np.asarray(tensor.quantization.scale, np.float64)
        scale = scale.reshape((-1,) + (1,) * (len(tensor.shape) - 1)) if scale.size > 1 else scale
        delta = _tensor_array(model, tensor) * scale - _tensor_array(reference, ref_graph.tensors[ref_op.inputs[1]])
        plans[weighted.name] = (delta, geometry, text(ref_graph.tensors[ref_op.inputs[0]].name))
    means = input_means(float_model, pixels, sorted({plan[2] for plan in plans.values()}), progress)
    return {name: channel_shifts(delta, means[source], geometry)
            for name, (delta, geometry, source) in plans.items()}


def apply_shifts(dynamic: bytes, shifts: dict[str, np.ndarray]) -> bytes:
    """`dynamic` with s_c subtracted from the float32 bias of each op named in `shifts` (each corrected op
    gets its own bias tensor: the converter shares identical biases, e.g. zeros, between ops)."""
    from tensorflow.lite.tools import flatbuffer_utils

    tflite = schema()
    model = flatbuffer_utils.convert_bytearray_to_object(dynamic)
    graph = model.subgraphs[0]
    for weighted in weighted_ops(model):
        if weighted.name not in shifts:
            continue
        op, shift = graph.operators[weighted.index], shifts[weighted.name]
        old = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        bias = np.zeros(len(shift), np.float64) if old is None else _tensor_array(model, old).astype(np.float64)
        buffer = tflite.BufferT()
        buffer.data = np.frombuffer((bias - shift).astype(np.float32).tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor = tflite.TensorT()
        tensor.name, tensor.shape, tensor.type = f"{weighted.name}/corrected_bias".encode(), [len(shift)], \
            tflite.TensorType.FLOAT32
        tensor.buffer = len(model.buffers) - 1
        graph.tensors.append(tensor)
        inputs = list(op.inputs) + [-1] * (3 - len(op.inputs))
        inputs[2] = len(graph.tensors) - 1
        op.inputs = inputs
    used = {graph.tensors[i].buffer for op in graph.operators for i in op.inputs if i >= 0}
    for tensor in graph.tensors:   # an old bias no op reads any more: drop its data
        if tensor.buffer not in used and model.buffers[tensor.buffer].data is not None:
            model.buffers[tensor.buffer].data = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def correct_biases(dynamic: bytes, float_model: bytes, mean_pixels: np.ndarray,
                   rmse_logits: Callable[[bytes], np.ndarray], rmse_images: int,
                   progress: Callable = lambda items, _label, _n: items) -> tuple[bytes, BiasCorrection]:
    """The rule: correct, then keep the corrected model only if its logit RMSE against the float32 model
    (`rmse_logits` runs a model on the selection images) is lower than the uncorrected one's."""
    shifts = bias_shifts(dynamic, float_model, mean_pixels, progress)
    corrected = apply_shifts(dynamic, shifts)
    reference = rmse_logits(float_model)

    def rmse(model: bytes) -> float:
        return float(np.sqrt(np.mean((rmse_logits(model) - reference) ** 2)))

    after, before = rmse(corrected), rmse(dynamic)
    result = BiasCorrection(after < before, after, before, len(mean_pixels), rmse_images,
                            {name: float(np.max(np.abs(s))) for name, s in shifts.items()})
    log.info("dynamic int8: bias correction of %d layers %s (logit RMSE %.4f corrected vs %.4f uncorrected on "
             "%d selection images)", len(shifts), "kept" if result.kept else "not kept", after, before, rmse_images)
    return (corrected if result.kept else dynamic), result
