"""Benchmark statistics against independent reference computations on fixed inputs."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from fracture_edge.benchmarks import macs, stats

FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"


def reference_auc(y, s):
    """AUC by counting every (positive, negative) pair: 1 if ranked right, 0.5 if tied."""
    pos = [v for v, t in zip(s, y) if t == 1]
    neg = [v for v, t in zip(s, y) if t == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("samples, q, expected", [
    ([1, 2, 3, 4], 50, 2.5),
    ([1, 2, 3, 4], 90, 3.7),            # position 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3)
    ([4, 1, 3, 2], 0, 1.0),             # unsorted input
    ([4, 1, 3, 2], 100, 4.0),
    ([7.0], 90, 7.0),
    ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 90, 91.0),  # position 8.1 -> 90 + 0.1 * 10
])
def test_percentile_matches_hand_computed_values(samples, q, expected):
    assert stats.percentile(samples, q) == pytest.approx(expected)


def test_percentile_rejects_out_of_range_q():
    with pytest.raises(ValueError, match="percentile"):
        stats.percentile([1, 2], 120)


def test_latency_summary_mean_std_throughput_by_hand():
    summary = stats.latency_summary([10.0, 20.0, 30.0, 40.0], batch=2)
    assert summary["runs"] == 4
    assert summary["mean_ms"] == pytest.approx(25.0)
    assert summary["std_ms"] == pytest.approx(math.sqrt((225 + 25 + 25 + 225) / 3))  # sample std, n - 1
    assert summary["p50_ms"] == pytest.approx(25.0)
    assert summary["images_per_s"] == pytest.approx(2 * 1000.0 / 25.0)
    assert (summary["min_ms"], summary["max_ms"]) == (10.0, 40.0)


@pytest.mark.parametrize("y, s", [
    ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]),
    ([1, 0, 1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1, 0.5, 0.7]),   # ties across classes
    ([0, 1, 1, 0, 0, 1, 0], [0.2, 0.2, 0.2, 0.2, 0.9, 0.9, 0.0]),
])
def test_auc_matches_pairwise_count(y, s):
    summary = stats.accuracy_summary(y, s, {"balanced": 0.5})
    assert summary["auc"] == pytest.approx(reference_auc(y, s))


def test_auc_hand_computed_value():
    assert stats.accuracy_summary([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], {})["auc"] == pytest.approx(0.75)


def test_auc_is_none_with_one_class():
    assert stats.accuracy_summary([1, 1, 1], [0.2, 0.5, 0.9], {})["auc"] is None


# y = 1 1 1 0 0 0 ; p = .9 .6 .3 .7 .2 .1
@pytest.mark.parametrize("name, threshold, accuracy, f1, sensitivity, specificity", [
    ("balanced", 0.5, 4 / 6, 2 / 3, 2 / 3, 2 / 3),     # TP 2, FN 1, FP 1, TN 2
    ("screening", 0.25, 5 / 6, 6 / 7, 1.0, 2 / 3),     # TP 3, FN 0, FP 1, TN 2: P .75, R 1 -> F1 6/7
])
def test_metrics_at_the_bundle_thresholds(name, threshold, accuracy, f1, sensitivity, specificity):
    y, p = [1, 1, 1, 0, 0, 0], [0.9, 0.6, 0.3, 0.7, 0.2, 0.1]
    m = stats.accuracy_summary(y, p, {"balanced": 0.5, "screening": 0.25})[name]
    assert m["threshold"] == threshold
    assert m["accuracy"] == pytest.approx(accuracy)
    assert m["f1"] == pytest.approx(f1)
    assert m["sensitivity"] == pytest.approx(sensitivity)
    assert m["specificity"] == pytest.approx(specificity)


def test_threshold_is_inclusive():
    m = stats.accuracy_summary([1, 0], [0.5, 0.49], {"balanced": 0.5})["balanced"]
    assert m["confusion"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 0}


def test_agreement_and_differences_against_reference():
    # decisions at 0.5: a = T F T F, b = T T T F -> 3 of 4 agree
    compared = stats.compare_to_reference([0.9, 0.4, 0.6, 0.1], [0.8, 0.6, 0.55, 0.2], 0.5)
    assert compared["agreement"] == pytest.approx(0.75)
    assert compared["max_abs_diff"] == pytest.approx(0.2)
    assert compared["mean_abs_diff"] == pytest.approx((0.1 + 0.2 + 0.05 + 0.1) / 4)


def test_agreement_rejects_different_lengths():
    with pytest.raises(ValueError, match="length"):
        stats.compare_to_reference([0.1, 0.2], [0.1], 0.5)


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 0.8), (20, 0.9), (30, 0.85), (5, 0.7), (10, 0.7)]
    assert sorted(stats.pareto_front(points)) == [0, 1, 3]


def test_gmacs_per_second():
    assert stats.gmacs_per_s(2.85e9, 20.0) == pytest.approx(57.0)
    assert stats.gmacs_per_s(None, 20.0) is None


def test_roc_points_are_thinned_but_keep_both_ends():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    roc = stats.roc_points(y, rng.random(1000), max_points=50)
    assert len(roc["fpr"]) <= 50
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)


@pytest.mark.parametrize("op, weights, output, expected", [
    ("CONV_2D", (8, 3, 3, 3), (1, 16, 16, 8), 16 * 16 * 8 * 3 * 3 * 3),
    ("DEPTHWISE_CONV_2D", (1, 3, 3, 8), (1, 16, 16, 8), 16 * 16 * 8 * 3 * 3),
    ("FULLY_CONNECTED", (1, 1024), (1, 1), 1024),
    ("BATCH_MATMUL", (64, 10), (1, 7, 10), 7 * 10 * 64),
    ("MEAN", (2,), (1, 8), 0),
])
def test_tflite_op_mac_formulas(op, weights, output, expected):
    shapes = {0: (1, 32, 32, 3), 1: weights, 2: output}
    assert macs._tflite_op_macs(op, [0, 1], [2], shapes) == expected


def test_tflite_and_onnx_counters_agree_on_the_fixture_model():
    """Two independent readers (LiteRT op list, ONNX shape inference) of the same network."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnx")
    from_tflite = macs.tflite_macs(FIXTURE_MODELS / "model_fp32.tflite")
    assert from_tflite > 0
    assert macs.onnx_macs(FIXTURE_MODELS / "model_fp32.onnx") == from_tflite


def test_onnx_counter_on_a_hand_built_graph(tmp_path):
    """Conv (4x3x3x3 on 8x8), grouped conv (group 4), Gemm with transB: MACs computed by hand."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def weight(name, shape):
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [weight("w1", (4, 3, 3, 3)), weight("w2", (4, 1, 3, 3)), weight("w3", (1, 256))])
    path = tmp_path / "hand.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    expected = 4 * 8 * 8 * (3 * 3 * 3) + 4 * 8 * 8 * (1 * 3 * 3) + 1 * 256
    assert macs.onnx_macs(path) == expected


def test_shift_scores_leave_the_probes_out_of_the_worst_and_the_mean():
    from fracture_edge.edge_runtime.shift_scores import score_shifts

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(30)]
    clean = 1 / (1 + np.exp(-(rng.normal(size=y.size) + 2 * y)))
    shifted = {"invert": 1 - clean, "gamma-1.6": clean ** 1.2, "dither-1": 1 - clean ** 3}   # the probe is worst here
    result = score_shifts(y, clean, shifted, {"balanced": 0.5, "screening": 0.3}, n=200)
    aucs = {name: row["auc"]["value"] for name, row in result["shifts"].items()}
    assert result["worst"] == {"shift": "invert", "auc": aucs["invert"]}
    assert result["mean_auc"] == pytest.approx((aucs["invert"] + aucs["gamma-1.6"]) / 2)
    assert result["acquisition_shifts"] == 2
    assert result["shifts"]["gamma-1.6"]["decisions_kept"] == {
        "balanced": np.mean((clean >= 0.5) == (clean ** 1.2 >= 0.5)), "screening": np.mean((clean >= 0.3) == (clean ** 1.2 >= 0.3))}
    assert result["shifts"]["invert"]["delta_vs_clean"]["value"] == pytest.approx(aucs["invert"] - result["clean"]["value"])


@pytest.mark.parametrize("text, expected", [("all", None), ("invert, jpeg-30", ("invert", "jpeg-30"))])
def test_shift_names_parse_all_or_a_comma_list(text, expected):
    from fracture_edge.edge_runtime.shift_scores import parse_shift_names
    from fracture_edge.edge_runtime.shifts import shift_names

    assert parse_shift_names(text) == (expected or shift_names())
    with pytest.raises(ValueError, match="unknown shift.*sepia"):
        parse_shift_names("invert,sepia")
