"""The fidelity verdict's statistics on constructed cases (numpy only, no TensorFlow): docs/fidelity-verdict.md."""
import json

import numpy as np
import pytest

from fracture_edge.export.gates import COMPRESSED, EXACT, VerdictRules, check_gates, noise_floor

THRESHOLDS = {"balanced": 0.5, "screening": 0.2, "default": "balanced"}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def population(n_pos: int = 200, n_neg: int = 950, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and float-model logits of a realistic screening set (AUC about 0.9)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    logits = np.where(labels == 1, rng.normal(1.5, 1.6, labels.size), rng.normal(-2.0, 1.6, labels.size))
    return labels, logits


def noisy(logits: np.ndarray, sd: float, seed: int) -> np.ndarray:
    return sigmoid(logits + np.random.default_rng(seed).normal(0.0, sd, logits.size))


def test_a_faithful_artifact_with_a_few_flips_passes():
    labels, logits = population()
    ref, artifact, dither = sigmoid(logits), noisy(logits, 0.1, 1), noisy(logits, 0.4, 2)
    result = check_gates("tflite-int8-dynamic", ref, artifact, labels, THRESHOLDS, dither_probs=dither)
    assert result.rule == COMPRESSED and result.passed, result.reason
    assert 0 < result.per_threshold["balanced"]["flips"] <= result.noise_floor["balanced"]["dither_flips"]
    assert set(result.non_inferiority) == {"auc", "balanced sensitivity", "balanced specificity",
                                           "screening sensitivity", "screening specificity"}
    assert all(t["ci_low"] > -t["margin"] for t in result.non_inferiority.values())


def test_a_biased_artifact_fails_non_inferiority_even_within_the_noise_floor():
    labels, logits = population()
    ref = sigmoid(logits)
    biased = sigmoid(logits - 0.6)                         # every probability lower: fractures are missed
    dither = noisy(logits, 1.5, 2)                         # a floor so high that flips alone cannot fail it
    result = check_gates("tflite-int8", ref, biased, labels, THRESHOLDS, dither_probs=dither)
    assert not result.passed
    assert all(f["passed"] for f in result.noise_floor.values())
    assert not result.non_inferiority["screening sensitivity"]["passed"]
    assert "screening sensitivity change" in result.reason and "lower bound" in result.reason


def test_more_flips_than_the_dither_fails_the_noise_floor():
    labels, logits = population()
    ref, artifact, dither = sigmoid(logits), noisy(logits, 0.5, 1), noisy(logits, 0.15, 2)
    result = check_gates("onnx-int8", ref, artifact, labels, THRESHOLDS, dither_probs=dither)
    assert not result.passed and "noise floor" in result.reason
    floor = result.noise_floor["balanced"]
    assert floor["flips"] > floor["dither_flips"] and floor["ratio"] == pytest.approx(floor["flips"] / floor["dither_flips"])


def test_a_tiny_set_cannot_pass_by_luck_even_with_no_flip():
    labels, logits = population(n_pos=12, n_neg=40)
    ref = sigmoid(logits)
    result = check_gates("tflite-fp16", ref, ref.copy(), labels, THRESHOLDS, dither_probs=noisy(logits, 0.4, 2))
    assert not result.passed and "too few images to resolve the margins" in result.reason
    assert VerdictRules().min_class_images == 100


def test_a_smaller_set_makes_passing_harder():
    """The same artifact error on fewer images gives wider intervals (lower bounds further down)."""
    bounds = []
    for n_pos, n_neg in ((800, 3800), (200, 950), (100, 475)):
        labels, logits = population(n_pos, n_neg, seed=3)
        ref, artifact = sigmoid(logits), noisy(logits, 0.3, 4)
        result = check_gates("tflite-int8", ref, artifact, labels, THRESHOLDS, dither_probs=noisy(logits, 0.6, 5))
        bounds.append(result.non_inferiority["balanced sensitivity"]["ci_low"])
    assert bounds[0] > bounds[1] > bounds[2]


def test_the_bootstrap_is_seeded_and_paired():
    labels, logits = population()
    ref, artifact = sigmoid(logits), noisy(logits, 0.2, 1)
    a = check_gates("tflite-int8", ref, artifact, labels, THRESHOLDS).non_inferiority
    b = check_gates("tflite-int8", ref, artifact, labels, THRESHOLDS).non_inferiority
    assert a == b
    same = check_gates("tflite-fp16", ref, ref.copy(), labels, THRESHOLDS).non_inferiority
    assert all(t["ci_low"] == t["ci_high"] == 0.0 for t in same.values())   # paired: no difference, no width


def test_without_the_dither_the_noise_floor_is_not_measured():
    labels, logits = population()
    result = check_gates("tflite-int8", sigmoid(logits), noisy(logits, 0.1, 1), labels, THRESHOLDS)
    assert result.passed and result.noise_floor is None
    off = check_gates("tflite-int8", sigmoid(logits), noisy(logits, 0.5, 1), labels, THRESHOLDS,
                      VerdictRules(noise_floor=False), dither_probs=sigmoid(logits))
    assert off.noise_floor is None


def test_zero_dither_flips_allow_zero_artifact_flips_only():
    ref = np.array([0.1, 0.9])
    assert noise_floor(ref, ref, ref, {"balanced": 0.5})["balanced"] == \
        {"flips": 0, "dither_flips": 0, "ratio": 0.0, "passed": True}
    assert not noise_floor(ref, ref[::-1], ref, {"balanced": 0.5})["balanced"]["passed"]


@pytest.mark.parametrize("fmt, delta, passed", [
    ("tflite-fp32", 5e-5, True), ("onnx-fp32", 2e-4, False),
])
def test_fp32_artifacts_must_be_exact(fmt, delta, passed):
    labels, logits = population(20, 20)              # exactness needs no evidence rule
    ref = sigmoid(logits)
    result = check_gates(fmt, ref, np.clip(ref + delta, 0, 1), labels, THRESHOLDS)
    assert result.rule == EXACT and result.passed is passed and result.non_inferiority == {}
    assert passed or "must be exact" in result.reason


@pytest.mark.parametrize("probs, reason", [(np.full(10, np.nan), "not finite"), (np.full(10, 2.0), "outside [0, 1]")])
def test_broken_outputs_fail_any_rule(probs, reason):
    labels = np.r_[np.ones(5, int), np.zeros(5, int)]
    for fmt in ("tflite-fp32", "tflite-int8-dynamic"):
        result = check_gates(fmt, np.full(10, 0.5), probs, labels, THRESHOLDS)
        assert not result.passed and reason in result.reason


def test_margins_are_configurable_and_set_the_evidence_rule():
    rules = VerdictRules(margin_sensitivity=0.3, margin_specificity=0.3)
    assert rules.min_class_images == 10
    labels, logits = population(12, 40)
    ref = sigmoid(logits)
    assert check_gates("tflite-fp16", ref, ref.copy(), labels, THRESHOLDS, rules).passed


def test_empty_or_mismatched_inputs():
    empty = check_gates("tflite-int8", [], [], [], THRESHOLDS)
    assert not empty.passed and "no verification images" in empty.reason
    with pytest.raises(ValueError, match="differ in length"):
        check_gates("tflite-int8", [0.1, 0.2], [0.1], [0, 1], THRESHOLDS)
    with pytest.raises(ValueError, match="dither"):
        check_gates("tflite-int8", [0.1, 0.2], [0.1, 0.2], [0, 1], THRESHOLDS, dither_probs=[0.1])


def test_result_serialises_to_standard_json():
    labels, logits = population()
    result = check_gates("tflite-int8", sigmoid(logits), noisy(logits, 0.1, 1), labels, THRESHOLDS,
                         dither_probs=noisy(logits, 0.4, 2))
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["rules"]["margin_auc"] == 0.01 and d["rules"]["min_class_images"] == 100
    assert d["noise_floor"]["screening"]["dither_flips"] >= d["noise_floor"]["screening"]["flips"]
    one_class = check_gates("tflite-fp32", [0.2, 0.3], [0.2, 0.3], [0, 0], THRESHOLDS).to_dict()
    assert one_class["auc"] is None and one_class["passed"] is True
