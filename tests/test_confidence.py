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


def brute_force_auc(y, s):
    """P(score of a positive > score of a negative) + half the ties, over every pair (no ranks, no sorting)."""
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def test_auc_interval_recomputed_independently_on_a_fixed_example():
    """The documented method, written out plainly: per resample, draw positives then negatives with replacement
    from one seeded generator, score the pairs, take the 2.5th and 97.5th percentiles."""
    y, s = hanley_mcneil_ct_ratings()
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng = np.random.default_rng(5)
    pos_draws, neg_draws = rng.integers(0, pos.size, (300, pos.size)), rng.integers(0, neg.size, (300, neg.size))
    draws = [brute_force_auc(y[np.r_[pos[p], neg[q]]], s[np.r_[pos[p], neg[q]]]) for p, q in zip(pos_draws, neg_draws)]
    interval = ci.auc_ci(y, s, n=300, seed=5)
    assert interval["value"] == pytest.approx(brute_force_auc(y, s))
    assert interval["ci_low"] == pytest.approx(np.percentile(draws, 2.5))
    assert interval["ci_high"] == pytest.approx(np.percentile(draws, 97.5))


def test_paired_difference_recomputed_independently():
    rng = np.random.default_rng(8)
    y = np.r_[np.ones(25), np.zeros(40)]
    a = rng.normal(size=y.size) + 1.2 * y
    b = a + rng.normal(size=y.size) * 0.8
    result = ci.paired_auc_difference(y, a, b, n=400, seed=2)
    diffs = np.array([brute_force_auc(y[idx], b[idx]) - brute_force_auc(y[idx], a[idx])
                      for idx in ci.stratified_resamples(y, 400, 2)])
    observed = brute_force_auc(y, b) - brute_force_auc(y, a)
    assert result["value"] == pytest.approx(observed)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert result["p_value"] == pytest.approx(np.mean(np.abs(diffs - diffs.mean()) >= abs(observed)))


def test_artifact_uncertainty_bundles_the_intervals_and_the_paired_test():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(30), np.zeros(50)]
    keras = 1 / (1 + np.exp(-(rng.normal(size=y.size) + 1.5 * y)))
    artifact = np.clip(keras + rng.normal(0, 0.05, y.size), 0, 1)
    thresholds = {"balanced": 0.5, "screening": 0.3, "default": "balanced"}
    result = ci.artifact_uncertainty(y, artifact, thresholds, reference_probs=keras, n=300, seed=3)
    assert result["metrics"] == ci.metric_cis(y, artifact, thresholds, n=300, seed=3)
    assert result["auc_vs_reference"] == ci.paired_auc_difference(y, keras, artifact, n=300, seed=3)
    assert "auc_vs_reference" not in ci.artifact_uncertainty(y, artifact, thresholds, n=50)
    assert ci.artifact_uncertainty(np.r_[1, np.zeros(20)], np.zeros(21), thresholds) is None   # one positive: no CI


def test_differences_are_formatted_with_sign_interval_and_p():
    entry = {"value": 0.0042, "ci_low": -0.0021, "ci_high": 0.0104, "p_value": 0.312}
    assert ci.format_change(entry) == "+0.004 (-0.002 to +0.010)"
    assert ci.format_difference(entry, 4) == "+0.0042 (-0.0021 to +0.0104), p 0.31"
