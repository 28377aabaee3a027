"""Metrics against independent brute-force reference computations."""
import itertools

import numpy as np
import pytest

from fracture_edge.edge_runtime import metrics


def brute_force_auc(y, s):
    """Probability that a random positive outranks a random negative (ties count half)."""
    pos = [p for p, t in zip(s, y) if t == 1]
    neg = [p for p, t in zip(s, y) if t == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # many ties
    assert metrics.roc_auc(y, s) == pytest.approx(brute_force_auc(y, s))


def test_auc_extremes_and_single_class():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert np.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_metrics_at_threshold_hand_computed():
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05]
    m = metrics.metrics_at(y, s, 0.5)  # TP=2 FN=1 FP=1 TN=3
    assert m["confusion"] == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(5 / 7)


def test_choose_thresholds_balanced_maximises_f1_and_screening_keeps_sensitivity():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    t = metrics.choose_thresholds(y, s, target_sensitivity=0.95)
    best_f1 = max(metrics.metrics_at(y, s, c)["f1"] for c in np.unique(s))
    assert metrics.metrics_at(y, s, t["balanced"])["f1"] == pytest.approx(best_f1)
    screening = metrics.metrics_at(y, s, t["screening"])
    assert screening["sensitivity"] >= 0.95
    # every stricter threshold (one that flags fewer images) loses the sensitivity target
    flagged = (s >= t["screening"]).sum()
    stricter = [c for c in np.unique(s) if (s >= c).sum() < flagged]
    assert stricter and all(metrics.metrics_at(y, s, c)["sensitivity"] < 0.95 for c in stricter)


def test_choose_thresholds_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        metrics.choose_thresholds([1, 1, 1], [0.1, 0.2, 0.3])


def test_agreement():
    assert metrics.agreement([0.1, 0.6, 0.7], [0.2, 0.4, 0.9], 0.5) == pytest.approx(2 / 3)


def test_probability_logits_are_finite_and_symmetric():
    from fracture_edge.edge_runtime.metrics import probability_logits

    logits = probability_logits([0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.all(np.isfinite(logits))
    assert logits[2] == 0.0
    assert logits[1] == pytest.approx(-logits[3]) and logits[3] == pytest.approx(np.log(3.0))
    assert logits[0] == pytest.approx(-logits[4]) and logits[4] > 15
