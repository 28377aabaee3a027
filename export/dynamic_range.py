"""Dynamic-range int8 TFLite with the stem convolution kept in float32.

In a dynamic-range model every convolution with int8 weights quantizes its float input at run time, per
image, to 8 bits. For conv1 that input is the image itself (after the in-graph normalization): one int8 step
is about 1.1 grey levels, a rounding of every pixel by up to ~0.6 grey levels, and this model reads pixel-level
noise of that size (a +-1 grey-level dither moves its logit by SD 0.41). Measured on 400 held-out TRAINING
images of the default model (never val/test): plain dynamic range, logit error vs Keras SD 0.223 (mean
+0.043); with conv1's weights restored to float32 (so its input is not quantized), SD 0.113 (mean -0.010).
conv1 holds 9,408 of the model's ~7 M weights and ~4 % of its multiply-adds.

The float weights are taken from the float32 conversion of the same SavedModel (same tensor names), so the
restored convolution is the fp32 artifact's, bit for bit.
"""
from __future__ import annotations

import numpy as np

FLOAT_STEM_CONVS = 1   # leading CONV_2D ops whose weights stay float32 (conv1: it reads the image)


def keep_first_convs_float(dynamic: bytes, float_model: bytes, count: int = FLOAT_STEM_CONVS) -> tuple[bytes, list[str]]:
    """(the dynamic-range model with its first `count` int8-weight CONV_2D ops back on float32 weights, their
    weight tensor names). ValueError when the float model lacks a weight tensor of the same name."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(dynamic)
    reference = flatbuffer_utils.convert_bytearray_to_object(float_model)
    float_tensors = {t.name: t for t in reference.subgraphs[0].tensors}
    graph, names = model.subgraphs[0], {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    restored = []
    for op in graph.operators:
        if len(restored) == count:
            break
        code = model.operatorCodes[op.opcodeIndex]
        weights = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
        if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) != "CONV_2D" or \
                weights is None or weights.type != schema.TensorType.INT8:
            continue
        source = float_tensors.get(weights.name)
        if source is None or source.type != schema.TensorType.FLOAT32:
            raise ValueError(f"no float32 tensor {weights.name!r} in the float model to restore")
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(bytes(reference.buffers[source.buffer].data), np.uint8)
        model.buffers.append(buffer)
        old = weights.buffer
        weights.buffer, weights.type, weights.quantization = len(model.buffers) - 1, schema.TensorType.FLOAT32, None
        if not any(t.buffer == old for t in graph.tensors):
            model.buffers[old].data = None      # the int8 copy is no longer read by any tensor
        restored.append(weights.name.decode() if isinstance(weights.name, bytes) else weights.name)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), restored
