"""Gate arithmetic on fixed arrays (no TensorFlow)."""
import json

import numpy as np
import pytest

from fracture_edge.export.gates import GateLimits, Gates, check_gates, precision_of

LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
REF = np.array([0.05, 0.10, 0.20, 0.30, 0.45, 0.55, 0.60, 0.70, 0.80, 0.95])
THRESHOLDS = {"balanced": 0.5, "screening": 0.25, "default": "balanced"}


def shifted(delta: float, index: int | None = None) -> np.ndarray:
    """REF with `delta` added to every probability, or to one of them."""
    out = REF.copy()
    if index is None:
        out += delta
    else:
        out[index] += delta
    return out


@pytest.mark.parametrize("fmt, probs, passed, reason_part", [
    ("tflite-fp32", shifted(5e-5), True, ""),
    ("onnx-fp32", shifted(2e-4, index=3), False, "max |dprob|"),
    ("tflite-fp16", shifted(0.01), True, ""),                      # no decision crosses a threshold
    ("tflite-fp16", shifted(0.1, index=4), False, "|dF1| at balanced"),   # 0.45 -> 0.55 flips a negative
    ("tflite-int8", shifted(0.02), True, ""),
    ("onnx-int8", shifted(-0.1, index=5), False, "agreement at balanced"),  # 0.55 -> 0.45 flips a positive
    ("tflite-int8", np.where(LABELS == 1, REF - 0.5, REF), False, "|dAUC|"),
    ("tflite-fp32", np.full(10, np.nan), False, "not finite"),
    ("onnx-fp32", shifted(2.0), False, "outside [0, 1]"),
])
def test_gate_verdicts(fmt, probs, passed, reason_part):
    result = check_gates(fmt, REF, probs, LABELS, THRESHOLDS)
    assert result.passed is passed
    assert (result.reasons == ()) is passed
    assert reason_part in result.reason


def test_metrics_are_computed_at_every_bundle_threshold():
    result = check_gates("tflite-fp16", REF, shifted(0.1, index=4), LABELS, THRESHOLDS)
    assert set(result.per_threshold) == {"balanced", "screening"}
    balanced = result.per_threshold["balanced"]
    assert balanced["f1_ref"] == pytest.approx(1.0)
    assert balanced["f1"] == pytest.approx(2 * (5 / 6) / (5 / 6 + 1))
    assert balanced["specificity"] == pytest.approx(0.8)
    assert balanced["agreement"] == pytest.approx(0.9)
    assert result.max_abs_dprob == pytest.approx(0.1)
    assert result.worst_abs_df1 == pytest.approx(abs(balanced["d_f1"]))


@pytest.mark.parametrize("limits, passed", [
    (dict(max_abs_df1=0.2), True),
    (dict(max_abs_df1=0.05), False),
    (dict(max_abs_df1=None, min_agreement=0.95), False),
    (dict(max_abs_df1=None, min_agreement=0.85), True),
])
def test_configured_limits_change_the_verdict(limits, passed):
    gates = Gates().with_limit("fp16", **limits)
    assert check_gates("tflite-fp16", REF, shifted(0.1, index=4), LABELS, THRESHOLDS, gates).passed is passed


def test_gates_are_frozen_and_with_limit_copies():
    gates = Gates()
    looser = gates.with_limit("int8", min_agreement=0.5)
    assert gates.int8.min_agreement == 0.99 and looser.int8.min_agreement == 0.5
    with pytest.raises(AttributeError):
        gates.int8 = GateLimits()  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["keras", "tflite-custom", "onnx-int4"])
def test_unknown_precision_is_rejected(bad):
    with pytest.raises(ValueError, match="valid"):
        precision_of(bad)


def test_empty_or_mismatched_inputs():
    empty = check_gates("tflite-int8", [], [], [], THRESHOLDS)
    assert not empty.passed and "no verification images" in empty.reason
    with pytest.raises(ValueError, match="differ in length"):
        check_gates("tflite-int8", REF, REF[:5], LABELS, THRESHOLDS)


def test_result_serialises_to_standard_json():
    one_class = check_gates("tflite-int8", REF, REF, np.zeros(10), THRESHOLDS)  # AUC undefined -> null
    d = json.loads(json.dumps(one_class.to_dict(), allow_nan=False))
    assert d["auc"] is None and d["passed"] is True and d["limits"]["min_agreement"] == 0.99
