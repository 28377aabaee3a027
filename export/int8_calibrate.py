"""Full-integer TFLite with calibration statistics recorded without buffer reuse.

TensorFlow's calibrator logs an op's inputs again after the op ran; when the memory planner let the
op write its output over an input (in-place MUL/ADD), the input is logged with the output's values
(observed here with TF 2.21). In a DenseNet, the last concat of each dense block feeds only the
next batch norm's MUL, so it got that MUL's range (58 instead of 1.9 on FracAtlas), and the shared
concat scale crushed the whole block. Here the converter only lays out the calibrated model (two
images); the min/max of every tensor are then recorded with all buffers kept apart, and the model
is quantized from those (with TensorFlow's private `convert.mlir_quantize`: pinned to the TensorFlow
version in pyproject).
"""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from .tflite_export import make_converter, pin_input_range
from .tflite_graph import op_code, schema, text

log = logging.getLogger(__name__)

LAYOUT_IMAGES = 2   # the converter's own calibration pass is replaced, it only needs to run


def calibrated_model(source, calib_pixels: np.ndarray) -> bytes:
    """Float model carrying min/max statistics of every activation, recorded on calib_pixels."""
    converter = make_converter(source, "int8", calib_pixels[:LAYOUT_IMAGES])
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 (same path as QuantizationDebugger)
    return record_ranges(converter.convert(), calib_pixels)


def activation_ranges(model_bytes: bytes, indices: Iterable[int], pixels: np.ndarray) -> dict[int, tuple]:
    """(min, max) of the given tensors over pixels, run by the float interpreter with no buffer reuse."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    ranges = {i: (np.inf, -np.inf) for i in indices}
    for image in pin_input_range(pixels):
        interpreter.set_tensor(input_index, image[None].astype(np.float32))
        interpreter.invoke()
        for i, (low, high) in ranges.items():
            value = interpreter.get_tensor(i)
            ranges[i] = (min(low, float(value.min())), max(high, float(value.max())))
    return ranges


def record_ranges(model_bytes: bytes, pixels: np.ndarray) -> bytes:
    """The calibrated model with every per-tensor min/max replaced by values recorded on pixels."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(model_bytes)
    tensors = model.subgraphs[0].tensors
    calibrated = [i for i, t in enumerate(tensors)
                  if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
    for i, (low, high) in activation_ranges(model_bytes, calibrated, pixels).items():
        tensors[i].quantization.min = np.array([low], np.float32)
        tensors[i].quantization.max = np.array([high], np.float32)
    log.info("int8 calibration: %d tensors on %d images (no buffer reuse)", len(calibrated), len(pixels))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def classifier_ops(model_bytes: bytes) -> tuple[str, ...]:
    """Output names of the ops that read the last MEAN (global average pool), directly or not: the classifier
    and its sigmoid. An extra output branching off before the pool (the heatmap) is not among them."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(model_bytes)
    graph = model.subgraphs[0]
    means = [i for i, op in enumerate(graph.operators) if op_code(model, op) == schema().BuiltinOperator.MEAN]
    if not means:
        return ()
    reached = {int(t) for t in graph.operators[means[-1]].outputs}
    head = []
    for op in graph.operators[means[-1] + 1:]:
        if reached & {int(t) for t in op.inputs}:
            reached |= {int(t) for t in op.outputs}
            head.append(text(graph.tensors[op.outputs[0]].name))
    return tuple(head)


def quantize_calibrated(calibrated: bytes, denylist: tuple[str, ...] = ()) -> bytes:
    """Integer model with uint8 pixel input and a float classifier head and output.

    The ops after the global average pool (FULLY_CONNECTED, LOGISTIC) stay float: they cost nothing,
    and an int8 LOGISTIC output has a fixed scale of 1/256, which alone moves probabilities near
    the screening threshold. Denylisted output tensors (a mixed model's float prefix) stay float too.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert

    head = classifier_ops(calibrated)
    return convert.mlir_quantize(calibrated, disable_per_channel=False, input_data_type=tf.uint8,
                                 output_data_type=tf.float32 if head else tf.uint8,
                                 denylisted_nodes=list(denylist) + list(head) or None)


def concat_range_violations(model_bytes: bytes) -> list[str]:
    """CONCATENATION outputs whose recorded range is not the union of their inputs' (a calibration bug)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(model_bytes)
    graph, bad = model.subgraphs[0], []
    for op in graph.operators:
        if op_code(model, op) != schema().BuiltinOperator.CONCATENATION:
            continue
        inputs = [graph.tensors[i].quantization for i in op.inputs]
        out = graph.tensors[op.outputs[0]]
        low, high = min(float(q.min[0]) for q in inputs), max(float(q.max[0]) for q in inputs)
        if not np.allclose([out.quantization.min[0], out.quantization.max[0]], [low, high], rtol=1e-4, atol=1e-6):
            bad.append(out.name.decode())
    return bad
