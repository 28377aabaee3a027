"""Extra outputs grafted onto a finished ONNX graph (export/onnx_graft.py), on small hand-built graphs:
the probability is bit-for-bit the graph's own, the heatmap's mean is the logit, the features are what the
classifier reads; a graph without a single-unit linear classifier on a global average pool is refused."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CHANNELS, SIZE = 6, 5


def classifier_graph(head: str = "gemm", units: int = 1, seed: int = 0) -> bytes:
    """pixels (N, 3, 5, 5) -> Conv -> Relu -> GlobalAveragePool -> Flatten -> linear (Gemm or MatMul + Add)
    -> Sigmoid, named like the exported graphs' probability output."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(size=(CHANNELS, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(units,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["pixels", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["pooled"])]
    kernel = rng.normal(size=(CHANNELS, units)).astype(np.float32)
    if head == "gemm":                              # the layout ORT's pre-processing leaves: (units, C), transB
        inits.append(numpy_helper.from_array(np.ascontiguousarray(kernel.T), "k"))
        nodes.append(helper.make_node("Gemm", ["pooled", "k", "b"], ["logit"], transB=1))
    elif head == "matmul":                          # tf2onnx's own: MatMul (C, units) + Add
        inits.append(numpy_helper.from_array(kernel, "k"))
        nodes += [helper.make_node("MatMul", ["pooled", "k"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["logit"])]
    else:                                           # a zero bias: tf2onnx leaves the Add out
        inits.append(numpy_helper.from_array(kernel, "k"))
        nodes.append(helper.make_node("MatMul", ["pooled", "k"], ["logit"]))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["fracture_prob"]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                                                            ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("fracture_prob", TensorProto.FLOAT, ["N", units])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def run(model: bytes, names: list[str], pixels: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(names, {"pixels": pixels})


@pytest.mark.parametrize("head", ["gemm", "matmul", "matmul without bias"])
def test_grafted_outputs_leave_the_probability_and_agree_with_it(head):
    from fracture_edge.export.onnx_graft import graft_extra_outputs

    plain = classifier_graph(head)
    grafted = graft_extra_outputs(plain, ("heatmap", "features"))
    pixels = np.random.default_rng(1).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32)
    (before,) = run(plain, ["fracture_prob"], pixels)
    after, heatmap, features = run(grafted, ["fracture_prob", "heatmap", "features"], pixels)
    assert np.array_equal(before, after)
    assert heatmap.shape == (4, SIZE, SIZE, 1) and features.shape == (4, CHANNELS)
    logits = np.log(after / (1 - after))[:, 0]
    np.testing.assert_allclose(heatmap.mean(axis=(1, 2, 3)), logits, atol=1e-5)
    (pooled,) = run(_expose(plain, "pooled"), ["pooled"], pixels)
    assert np.array_equal(features, pooled)
    outputs = [(o.name, o.shape) for o in ort.InferenceSession(grafted, providers=["CPUExecutionProvider"]).get_outputs()]
    assert [name for name, _ in outputs] == ["fracture_prob", "heatmap", "features"]
    assert outputs[1][1][1:] == [SIZE, SIZE, 1] and outputs[2][1][1:] == [CHANNELS]


def _expose(model: bytes, tensor: str) -> bytes:
    """The model with an intermediate tensor as its only output (the reference features)."""
    proto = onnx.load_from_string(model)
    del proto.graph.output[:]
    proto.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    return proto.SerializeToString()


def test_only_the_named_outputs_are_grafted_and_none_leaves_the_bytes():
    from fracture_edge.export.onnx_graft import graft_extra_outputs

    plain = classifier_graph()
    assert graft_extra_outputs(plain, ()) is plain
    grafted = onnx.load_from_string(graft_extra_outputs(plain, ("features",)))
    assert [o.name for o in grafted.graph.output] == ["fracture_prob", "features"]


@pytest.mark.parametrize("case, message", [
    ("two units", "heatmap needs one"),
    ("no pool", "no GlobalAveragePool"),
    ("unknown output", "no ONNX graft"),
])
def test_graphs_it_cannot_graft_onto_are_refused_with_the_reason(case, message):
    from fracture_edge.export.onnx_graft import GraftError, graft_extra_outputs

    names = ("heatmap", "features")
    model = classifier_graph(units=2) if case == "two units" else classifier_graph()
    if case == "no pool":
        proto = onnx.load_from_string(model)
        for node in proto.graph.node:
            if node.op_type == "GlobalAveragePool":
                node.op_type = "GlobalMaxPool"
        model = proto.SerializeToString()
    if case == "unknown output":
        names = ("saliency",)
    with pytest.raises(GraftError, match=message):
        graft_extra_outputs(model, names)
