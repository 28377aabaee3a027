"""Count the model's multiply-accumulates (MACs) per image from an exported graph's op list and tensor shapes.

Method: only convolutions and matrix products are counted (they are > 99 % of DenseNet121's
arithmetic; pooling, batch-norm, activations and concatenations are left out, as is customary).
- CONV_2D: out_elements x kernel_h x kernel_w x in_channels (weights [Cout, kh, kw, Cin]);
- DEPTHWISE_CONV_2D: out_elements x kernel_h x kernel_w (weights [1, kh, kw, C*mult]);
- FULLY_CONNECTED / BATCH_MATMUL: out_elements x reduction length.
The graph is read with the LiteRT interpreter's op list (TF-free) from the fp32 .tflite (any .tflite
otherwise), or from the ONNX graph after onnx shape inference (Conv: out x Cin/group x kh x kw;
Gemm/MatMul: out x K). Totals are divided by the input batch so the figure is per image.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..edge_runtime.formats import FORMATS

log = logging.getLogger(__name__)

TFLITE_ORDER = ("tflite-fp32", "tflite-fp16", "tflite-int8")
ONNX_ORDER = ("onnx-fp32", "onnx-int8")


def count_model_macs(run_dir: str | Path) -> tuple[int | None, str]:
    """(MACs per image, how they were counted) for the run folder's first readable graph."""
    run_dir = Path(run_dir)
    for name in TFLITE_ORDER + ONNX_ORDER:
        path = run_dir / FORMATS[name].filename
        if not path.is_file():
            continue
        counter = MAC_COUNTERS[FORMATS[name].backend]
        try:
            return counter(path), f"conv/dense MACs from the {name} graph ({path.name}) tensor shapes"
        except Exception as exc:  # any reader failure: try the next artifact
            log.info("cannot count MACs from %s: %s", path, exc)
    return None, "not counted (no readable .tflite or .onnx graph; LiteRT or the onnx package is needed)"


def _load_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter  # only when TensorFlow is present
    return Interpreter(model_path=str(path))


def tflite_macs(path: str | Path) -> int:
    """MACs per image of a .tflite graph, from the interpreter's op list and tensor shapes."""
    interpreter = _load_interpreter(Path(path))
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    batch = max(shapes[interpreter.get_input_details()[0]["index"]][0], 1)
    total = 0
    for op in interpreter._get_ops_details():  # public API has no op list; stable since TF 2.5
        total += _tflite_op_macs(op["op_name"], list(op["inputs"]), list(op["outputs"]), shapes)
    return int(total // batch)


def _tflite_op_macs(op_name: str, inputs: list[int], outputs: list[int], shapes: dict) -> int:
    if op_name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL") or not outputs:
        return 0
    out_elements = int(np.prod(shapes[outputs[0]]))
    weights = shapes.get(inputs[1]) if len(inputs) > 1 and inputs[1] >= 0 else None
    if not weights:
        return 0
    if op_name == "CONV_2D":          # [Cout, kh, kw, Cin]
        return out_elements * weights[1] * weights[2] * weights[3]
    if op_name == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C]
        return out_elements * weights[1] * weights[2]
    if op_name == "FULLY_CONNECTED":  # [units, in]
        return out_elements * weights[-1]
    return out_elements * weights[-2]  # BATCH_MATMUL: [.., K, N]


def onnx_macs(path: str | Path) -> int:
    """MACs per image of an .onnx graph, after onnx shape inference (needs the onnx package)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    shapes = {init.name: tuple(numpy_helper.to_array(init).shape) for init in graph.initializer}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes.setdefault(value.name, tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims))
    _follow_dequantize(graph, shapes)
    total = sum(_onnx_node_macs(node, shapes) for node in graph.node)
    batch = max(shapes.get(graph.input[0].name, (1,))[0], 1)
    return int(total // batch)


def _follow_dequantize(graph, shapes: dict) -> None:
    """QDQ graphs feed weights through DequantizeLinear: give its output the weight's shape."""
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])


def _onnx_node_macs(node, shapes: dict) -> int:
    if node.op_type not in ("Conv", "Gemm", "MatMul") or not node.output or node.output[0] not in shapes:
        return 0
    out_elements = int(np.prod(shapes[node.output[0]]))
    weights = shapes.get(node.input[1]) if len(node.input) > 1 else None
    if not weights:
        return 0
    if node.op_type == "Conv":  # [Cout, Cin/group, kh, kw]
        return out_elements * int(np.prod(weights[1:]))
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return out_elements * (weights[1] if trans_b else weights[0])
    return out_elements * weights[-2]  # MatMul [.., K, N]


MAC_COUNTERS = {"tflite": tflite_macs, "onnx": onnx_macs}   # a Format's backend -> the reader of its graph
