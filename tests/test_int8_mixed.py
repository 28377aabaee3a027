"""Choosing the float prefix of a mixed int8 model: cut points, binary search, the selection criterion."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_edge.export.int8_mixed import SEARCH_SHARE, SearchTarget, FloatPrefix, prefixes_of, selection_trial, shortest_passing

NAMES = ["m/imagenet_normalization_1/mul", "m/conv1_relu_1/Relu;m/conv1_bn_1/add", "m/pool1_1/MaxPool2d",
         "m/conv2_block1_0_relu_1/Relu", "m/conv2_block1_2_conv_1/convolution", "m/conv2_block1_concat_1/concat",
         "m/pool2_conv_1/convolution", "m/pool2_pool_1/AvgPool", "m/fracture_prob_1/MatMul"]
THRESHOLDS = {"balanced": 0.5, "screening": 0.2, "default": "balanced"}
LIMITS = SearchTarget(max_abs_dauc=0.01, min_agreement=0.96)


def test_prefixes_end_after_the_stem_each_dense_layer_and_each_transition():
    prefixes = prefixes_of(NAMES)
    assert [p.through for p in prefixes] == ["pool1", "conv2_block1_concat", "pool2_pool"]
    assert [len(p.ops) for p in prefixes] == [3, 6, 8]
    assert prefixes[1].ops == tuple(NAMES[:6])


def test_a_graph_without_densenet_names_is_cut_after_every_op():
    names = ["a/conv", "b/relu", "c/dense"]
    assert [p.ops for p in prefixes_of(names)] == [("a/conv",), ("a/conv", "b/relu"), tuple(names)]


@pytest.mark.parametrize("first_passing", [0, 1, 17, 38, 39])
def test_binary_search_finds_the_shortest_passing_prefix_in_few_trials(first_passing):
    tried = []

    def passes(i):
        tried.append(i)
        return i >= first_passing

    assert shortest_passing(40, passes) == first_passing
    assert tried[0] == 39 and len(tried) <= 1 + int(np.ceil(np.log2(40)))


def test_search_gives_up_after_one_trial_when_the_longest_prefix_fails():
    tried = []
    assert shortest_passing(40, lambda i: tried.append(i) or False) is None
    assert tried == [39]
    assert shortest_passing(0, lambda i: True) is None


def probs_with_flips(flips: int, n: int = 200, seed: int = 0):
    """Reference probabilities, labels, and a copy with `flips` decisions flipped at the balanced threshold."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    ref = 0.25 * labels + rng.uniform(0.02, 0.74, n)          # overlapping classes: AUC below 1
    probs = ref.copy()
    probs[:flips] = np.where(ref[:flips] >= 0.5, 0.49, 0.51)
    return ref, probs, labels


def test_selection_allows_only_a_share_of_the_gates_disagreement():
    prefix = FloatPrefix("conv2_block1_concat", tuple(NAMES[:6]))
    n = 200
    allowed = int(np.floor(n * (1 - LIMITS.min_agreement) * SEARCH_SHARE + 1e-9))
    assert allowed == 2
    ok = selection_trial(prefix, *probs_with_flips(allowed, n), THRESHOLDS, LIMITS, 1.0)
    bad = selection_trial(prefix, *probs_with_flips(allowed + 1, n), THRESHOLDS, LIMITS, 1.0)
    assert ok.passed and ok.ops == 6 and ok.agreement["balanced"] == pytest.approx(1 - allowed / n)
    assert not bad.passed


def test_selection_rejects_an_auc_loss_even_with_full_agreement():
    ref, _, labels = probs_with_flips(0)
    probs = np.select([ref < 0.2, ref < 0.5], [0.1, 0.35], 0.75)   # same decisions, ranking within lost
    trial = selection_trial(FloatPrefix("pool1", tuple(NAMES[:3])), ref, probs, labels, THRESHOLDS,
                            SearchTarget(max_abs_dauc=0.0001, min_agreement=0.0), 1.0)
    assert all(a == 1.0 for a in trial.agreement.values())
    assert abs(trial.d_auc) > 0.0001 and not trial.passed


def test_selection_images_are_training_images_held_out_from_calibration(tmp_path):
    from fracture_edge.edge_runtime.preprocessing import InputContract
    from fracture_edge.export.calibration import calibration_set, selection_set
    from fracture_edge.train.synthetic import SyntheticSpec, write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", SyntheticSpec(train=60, val=4, test=4, image_size=32))
    contract = InputContract(size=16)
    calib = calibration_set(data, contract, 10)
    chosen = selection_set(data, contract, 1000, calib.paths)
    assert len(chosen) == 50 and not set(chosen.paths) & set(calib.paths)
    assert all("/train/" in p.replace("\\", "/") for p in chosen.paths)
    assert set(selection_set(data, contract, 20, calib.paths).paths) <= set(chosen.paths)


def test_report_warns_when_a_mixed_int8_is_no_smaller_than_fp16():
    from fracture_edge.export.pipeline import ExportRow
    from fracture_edge.export.report import mixed_int8_notes

    kept = {"kept_float": {"through": "pool4_pool", "ops": 228, "of_ops": 313, "rule": "r"}}
    fp16 = ExportRow("tflite-fp16", "model_fp16.tflite", "ok", 1.0, bytes=14_000_000)
    big = ExportRow("tflite-int8", "model_int8.tflite", "ok", 1.0, bytes=21_500_000, facts=kept)
    small = ExportRow("tflite-int8", "model_int8.tflite", "ok", 1.0, bytes=8_000_000, facts=kept)
    full = ExportRow("tflite-int8", "model_int8.tflite", "ok", 1.0, bytes=21_500_000)
    notes = mixed_int8_notes([fp16, big])
    assert len(notes) == 1 and "228 of 313" in notes[0] and "deploy tflite-fp16" in notes[0]
    assert mixed_int8_notes([fp16, small]) == [] and mixed_int8_notes([fp16, full]) == []
