"""Extra outputs (export/extra_outputs.py) added to a finished ONNX graph, beside its probability path.

The ONNX artifacts are converted and quantized without the extra outputs, then the outputs are grafted
on: the probability path is the very graph (nodes, weights, calibration ranges) an export without them
gives. Converting a Keras model that already has them was not enough: onnx-int8's probability moved by
2e-4 on the CI machine (not on the dev one, where the heatmap's quantized 1x1 convolution was seen to change
the layout onnxruntime runs the int8 global average pool in). The grafted heatmap is a float convolution
(reading the dequantized last feature map in int8 graphs), so nothing on the probability path gains a
quantized consumer, and calibration never sees the extra outputs.

heatmap:  Conv(last feature map, the classifier's weights and bias as a 1x1 kernel) -> (N, h, w, 1)
features: the tensor the classifier reads (the pooled features, after their int8 rounding in int8 graphs)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .extra_outputs import FEATURES, HEATMAP

FLOAT = 1                                  # onnx.TensorProto.FLOAT (onnx is imported where it is used)

POOLS = ("GlobalAveragePool",)
FLATTENING = ("Squeeze", "Reshape", "Flatten", "QuantizeLinear", "DequantizeLinear")


class GraftError(ValueError):
    """The graph does not end in global average pooling + one linear unit, so the outputs cannot be grafted."""


def graft_extra_outputs(model_bytes: bytes, names: tuple[str, ...]) -> bytes:
    """The serialized model with outputs [its own..., *names] added; unchanged when names is empty."""
    import onnx

    if not names:
        return model_bytes
    unknown = [n for n in names if n not in (HEATMAP, FEATURES)]
    if unknown:
        raise GraftError(f"no ONNX graft for extra output(s) {', '.join(unknown)}")
    model = onnx.load_from_string(model_bytes)
    head = find_head(model)
    for name in names:
        if name == HEATMAP:
            add_heatmap(model, head)
        else:
            add_output(model.graph, head.features, FEATURES, [head.batch, head.channels])
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass(frozen=True)
class Head:
    """Where the classifier sits: the pool's input (N, C, h, w), the classifier's input (N, C), its weights."""

    feature_map: str
    features: str
    kernel: np.ndarray                     # (C,)
    bias: float
    batch: int | str                       # a symbol when the batch is dynamic
    channels: int
    height: int
    width: int


def find_head(model) -> Head:
    """The last global average pool and the single-unit Gemm or MatMul(+Add) that reads it."""
    import onnx

    graph = model.graph
    nodes = list(graph.node)
    pools = [i for i, node in enumerate(nodes) if node.op_type in POOLS]
    if not pools:
        raise GraftError("no GlobalAveragePool in the graph")
    pool = nodes[pools[-1]]
    consumers = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensor = pool.output[0]
    for _ in range(8):                                     # pool -> [Q -> DQ] -> Squeeze -> Gemm
        readers = consumers.get(tensor, [])
        if len(readers) != 1:
            raise GraftError(f"the pool's output {tensor!r} has {len(readers)} readers, expected one")
        reader = readers[0]
        if reader.op_type not in FLATTENING:
            break
        tensor = reader.output[0]
    constants = constant_values(graph)
    kernel, bias = linear_weights(reader, tensor, consumers, constants)
    shape = tensor_shape(onnx.shape_inference.infer_shapes(model).graph, pool.input[0])
    if kernel.shape != (shape[1],):
        raise GraftError(f"classifier weights {kernel.shape} do not match the {shape[1]} pooled channels")
    return Head(pool.input[0], tensor, kernel, bias, *shape)


def linear_weights(node, features: str, consumers: dict, constants: dict) -> tuple[np.ndarray, float]:
    """(kernel (C,), bias) of the single logit computed from `features` by a Gemm or a MatMul + Add."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Gemm":
        import onnx

        get = {k: onnx.helper.get_attribute_value(v) for k, v in attrs.items()}
        if get.get("transA", 0) or node.input[0] != features or node.input[1] not in constants:
            raise GraftError(f"unsupported classifier Gemm {node.name!r}")
        weight = constants[node.input[1]]
        weight = weight.T if get.get("transB", 0) else weight
        bias = constants[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(1)
        kernel, bias = weight * get.get("alpha", 1.0), bias * get.get("beta", 1.0)
    elif node.op_type == "MatMul" and node.input[0] == features and node.input[1] in constants:
        kernel, bias = constants[node.input[1]], np.zeros(1)      # tf2onnx drops an Add of zeros
        readers = consumers.get(node.output[0], [])
        if any(reader.op_type == "Add" for reader in readers):
            other = [i for i in readers[0].input if i != node.output[0]]
            if len(readers) != 1 or len(other) != 1 or other[0] not in constants:
                raise GraftError(f"classifier MatMul {node.name!r} is not followed by one bias Add")
            bias = constants[other[0]]
    else:
        raise GraftError(f"the pooled features feed a {node.op_type} ({node.name!r}), not a linear classifier")
    if kernel.ndim != 2 or kernel.shape[1] != 1 or np.size(bias) != 1:
        raise GraftError(f"classifier weights {kernel.shape} give {kernel.shape[1:]} logits; the heatmap needs one")
    return kernel[:, 0].astype(np.float32), float(np.ravel(bias)[0])


def constant_values(graph) -> dict[str, np.ndarray]:
    """Initializers and Constant node outputs by name."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def tensor_shape(graph, name: str) -> list:
    """[N, C, h, w] of a 4-d float tensor after shape inference (N may be a symbol)."""
    for info in (*graph.value_info, *graph.output, *graph.input):
        if info.name == name:
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "N")
                    for d in info.type.tensor_type.shape.dim]
            if len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[1:]):
                return dims
            raise GraftError(f"the last feature map {name!r} has shape {dims}; expected (N, C, h, w)")
    raise GraftError(f"the shape of the last feature map {name!r} is unknown")


def add_heatmap(model, head: Head) -> None:
    """Conv 1x1 (C -> 1) with the classifier's weights on the pool's input, transposed to (N, h, w, 1)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weight = numpy_helper.from_array(head.kernel.reshape(1, -1, 1, 1), f"{HEATMAP}_kernel")
    bias = numpy_helper.from_array(np.array([head.bias], np.float32), f"{HEATMAP}_bias")
    graph.initializer.extend([weight, bias])
    graph.node.extend([
        helper.make_node("Conv", [head.feature_map, weight.name, bias.name], [f"{HEATMAP}_nchw"],
                         name=f"{HEATMAP}_conv", kernel_shape=[1, 1]),
        helper.make_node("Transpose", [f"{HEATMAP}_nchw"], [HEATMAP], name=f"{HEATMAP}_nhwc", perm=[0, 2, 3, 1])])
    graph.output.append(helper.make_tensor_value_info(HEATMAP, FLOAT, [head.batch, head.height, head.width, 1]))


def add_output(graph, tensor: str, name: str, shape: list) -> None:
    """`tensor` exposed as graph output `name` (an Identity, which onnxruntime removes when it optimizes)."""
    from onnx import helper

    graph.node.append(helper.make_node("Identity", [tensor], [name], name=f"{name}_output"))
    graph.output.append(helper.make_tensor_value_info(name, FLOAT, shape))
