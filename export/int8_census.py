"""Which ops of an int8 artifact compute in float: the check behind "full integer but for the classifier"."""
from __future__ import annotations

import os
from collections import Counter

from ..edge_runtime.formats import format_for_file
from .tflite_graph import op_name, schema

EDGE_OPS = {"QUANTIZE", "DEQUANTIZE", "QuantizeLinear", "DequantizeLinear"}
GLOBAL_POOLS = {"MEAN", "GlobalAveragePool", "ReduceMean"}


def tflite_float_ops(path: str | os.PathLike) -> list[tuple[str, bool]]:
    """(op name, is float) for every op of a .tflite graph in order; float = outputs float32."""
    import numpy as np

    from ..edge_runtime.backends import tflite_interpreter_class

    interpreter_class, _ = tflite_interpreter_class()
    interpreter = interpreter_class(model_path=os.fspath(path))
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 (the public API has no op list)
    return [(op["op_name"], any(tensors[i]["dtype"] == np.float32 for i in op["outputs"] if i in tensors))
            for op in ops if op["op_name"] != "DELEGATE"]


def onnx_float_ops(path: str | os.PathLike) -> list[tuple[str, bool]]:
    """(op type, is float) for every node of an ONNX QDQ graph's probability path in order; float = reads a
    float tensor.

    Constant folding of weights aside, a QDQ node reads DequantizeLinear outputs only; a node kept in
    float reads a plain float tensor (the graph input or another float node's output). The probability
    path is what the first output depends on: the extra outputs grafted beside it (onnx_graft.py, a float
    heatmap convolution) are not counted.
    """
    import onnx

    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    constants = {init.name for init in graph.initializer}
    nodes = list(graph.node)
    needed = ancestors(nodes, graph.output[0].name)
    out = []
    for node in (node for k, node in enumerate(nodes) if k in needed):
        inputs = [i for i in node.input if i and i not in constants and produced_by.get(i) != "Constant"]
        out.append((node.op_type, any(produced_by.get(i) != "DequantizeLinear" for i in inputs)))
    return out


def ancestors(nodes: list, tensor: str) -> set[int]:
    """Indices of the nodes `tensor` depends on, the one producing it included."""
    producer = {out: k for k, node in enumerate(nodes) for out in node.output}
    seen, stack = set(), [tensor]
    while stack:
        k = producer.get(stack.pop())
        if k is not None and k not in seen:
            seen.add(k)
            stack.extend(nodes[k].input)
    return seen


def float_op_summary(ops: list[tuple[str, bool]]) -> dict:
    """Float ops by type, and whether all of them come after the global average pool (the classifier).

    QUANTIZE/DEQUANTIZE (QuantizeLinear/DequantizeLinear) are the edges between float and integer
    and are not counted.
    """
    pools = [i for i, (name, _) in enumerate(ops) if name in GLOBAL_POOLS]
    cut = pools[-1] if pools else len(ops)
    body = [name for name, is_float in ops[:cut + 1] if is_float and name not in EDGE_OPS]
    head = [name for name, is_float in ops[cut + 1:] if is_float and name not in EDGE_OPS]
    return {"float_ops_body": dict(Counter(body)),
            "float_ops_classifier": dict(Counter(head)), "integer_but_classifier": not body}


def int8_census(path: str | os.PathLike) -> dict:
    """float_op_summary of a .tflite or .onnx int8 artifact."""
    ops = FLOAT_OP_READERS[format_for_file(os.fspath(path)).backend](path)
    return float_op_summary(ops)



# backend -> the reader of an int8 artifact's op list, (op, runs in float) in graph order
FLOAT_OP_READERS = {"tflite": tflite_float_ops, "onnx": onnx_float_ops}


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def dynamic_range_census(path: str | os.PathLike) -> dict:
    """How much of a dynamic-range .tflite is int8: weighted ops with int8 weights, weight bytes by type.

    Read from the flatbuffer (the converter's graph, before any delegate rewrites it). Activations of a
    dynamic-range model are float32 by design; XNNPACK quantizes them per image at run time.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(os.fspath(path))
    graph = model.subgraphs[0]
    int8_ops, float_ops = Counter(), Counter()
    weight_bytes = Counter()
    for op in graph.operators:
        name = op_name(model, op)
        if name not in WEIGHTED_OPS or len(op.inputs) < 2:
            continue
        weights = graph.tensors[op.inputs[1]]
        is_int8 = weights.type == schema().TensorType.INT8
        (int8_ops if is_int8 else float_ops)[name] += 1
        data = model.buffers[weights.buffer].data
        weight_bytes["int8" if is_int8 else "float"] += 0 if data is None else len(data)
    weighted = sum(int8_ops.values()) + sum(float_ops.values())
    return {"ops": len(graph.operators), "weighted_ops": weighted, "int8_weight_ops": sum(int8_ops.values()),
            "int8_weight_ops_by_type": dict(int8_ops), "float_weight_ops_by_type": dict(float_ops),
            "int8_weight_bytes": weight_bytes["int8"], "float_weight_bytes": weight_bytes["float"],
            "activations": "float32 (quantized per image at run time by the interpreter)"}
