"""Confidence intervals: checked against a published AUC example and against DeLong's analytic variance."""
import numpy as np
import pytest

from fracture_edge.edge_runtime import confidence as ci


def hanley_mcneil_ct_ratings():
    """Hanley & McNeil (Radiology 1982), 109 CT images rated 1-5: AUC 0.893, standard error ~0.032."""
    negatives = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    positives = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    return np.r_[np.zeros(negatives.size), np.ones(positives.size)], np.r_[negatives, positives].astype(float)


def test_delong_reproduces_the_published_example():
    y, s = hanley_mcneil_ct_ratings()
    auc, variance = ci.delong_auc_variance(y, s)
    assert auc == pytest.approx(0.893, abs=5e-4)
    assert 0.029 <= np.sqrt(variance) <= 0.033


@pytest.mark.parametrize("data", ["published", "gaussian"])
def test_bootstrap_interval_matches_delong(data):
    if data == "published":
        y, s = hanley_mcneil_ct_ratings()
    else:
        rng = np.random.default_rng(3)
        y = np.r_[np.ones(150), np.zeros(420)]
        s = rng.normal(size=y.size) + 1.3 * y
    auc, variance = ci.delong_auc_variance(y, s)
    interval = ci.auc_ci(y, s, n=2000, seed=0)
    assert interval["value"] == pytest.approx(auc)
    assert interval["ci_low"] < auc < interval["ci_high"]
    assert (interval["ci_high"] - interval["ci_low"]) / 3.92 == pytest.approx(np.sqrt(variance), rel=0.12)


def test_bootstrap_is_seeded_and_stratified():
    y = np.r_[np.ones(7), np.zeros(30)]
    rows = ci.stratified_resamples(y, n=50, seed=1)
    assert rows.shape == (50, 37)
    assert (y[rows].sum(axis=1) == 7).all()          # every resample keeps the class counts
    assert np.array_equal(rows, ci.stratified_resamples(y, n=50, seed=1))
    assert not np.array_equal(rows, ci.stratified_resamples(y, n=50, seed=2))
    with pytest.raises(ValueError):
        ci.stratified_resamples(np.ones(5))


def test_operating_point_intervals_bracket_the_point_estimates():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(80), np.zeros(200)]
    s = 1 / (1 + np.exp(-(rng.normal(size=y.size) + 1.5 * y)))
    result = ci.metric_cis(y, s, {"balanced": 0.6, "screening": 0.3, "default": "balanced"}, n=500)
    assert set(result) >= {"auc", "balanced", "screening"} and "default" not in result
    for point in ("balanced", "screening"):
        for rate in ci.RATES:
            entry = result[point][rate]
            assert 0 <= entry["ci_low"] <= entry["value"] <= entry["ci_high"] <= 1
    assert result["screening"]["sensitivity"]["value"] > result["balanced"]["sensitivity"]["value"]


def test_paired_difference_detects_a_worse_model_and_not_an_identical_one():
    rng = np.random.default_rng(4)
    y = np.r_[np.ones(120), np.zeros(300)]
    good = rng.normal(size=y.size) + 1.5 * y
    worse = good + rng.normal(size=y.size) * 1.5
    same = ci.paired_auc_difference(y, good, good, n=500)
    assert same["value"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_value"] == 1.0
    drop = ci.paired_auc_difference(y, good, worse, n=500)
    assert drop["ci_high"] < 0 and drop["p_value"] < 0.01
    assert ci.format_ci({"value": 0.9123, "ci_low": 0.8891, "ci_high": 0.9333}) == "0.912 (0.889-0.933)"
