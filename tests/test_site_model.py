"""The in-distribution model of the pooled features (edge_runtime/site_model.py) on constructed feature sets."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from fracture_edge.edge_runtime.metrics import roc_auc
from fracture_edge.edge_runtime.site_model import (FLAG_P, MIN_SITE_IMAGES, binomial_upper_tail, fit_site_model,
                                                     judge_site, load_site_model, wilson_interval)

D = 96


def draw(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Features with a few strong directions and many weak ones (as pooled CNN features have); `shift`
    moves every image along the weak directions, where training images hardly vary."""
    rng = np.random.default_rng(seed)
    scale = np.where(np.arange(D) < 8, 3.0, 0.3)
    x = rng.normal(size=(n, D)) * scale + 1.0
    x[:, 8:] += shift
    return np.maximum(x, 0.0)          # ReLU features are non-negative


@pytest.fixture(scope="module")
def model():
    return fit_site_model(draw(3000, seed=0), components=32)   # 750 held out: the 95th percentile to ~1 %


def test_images_from_elsewhere_are_flagged_and_ranked_apart(model):
    home, away = draw(400, seed=1), draw(400, seed=2, shift=0.5)
    assert model.flags(away).mean() > 0.9
    distances = np.concatenate([model.distances(home), model.distances(away)])
    assert roc_auc(np.r_[np.zeros(400), np.ones(400)], distances) > 0.99


def test_new_images_like_the_training_ones_are_flagged_about_five_percent_of_the_time(model):
    share = model.flags(draw(4000, seed=3)).mean()
    # a conformal p-value: FLAG_P by construction, up to the sampling of 750 held-out images (SD 0.8 %)
    assert abs(share - FLAG_P) < 0.025


def test_a_site_like_the_training_data_passes_and_a_different_one_is_told_to_adapt(model):
    like = [judge_site(model.flags(draw(50, seed=100 + i))).verdict for i in range(40)]
    different = [judge_site(model.flags(draw(50, seed=200 + i, shift=0.5))).verdict for i in range(40)]
    assert like.count("like the training data") >= 38 and different.count("different") == 40
    verdict = judge_site(model.flags(draw(50, seed=7, shift=0.5)))
    assert "fracture-edge adapt" in verdict.words and verdict.ci_low > FLAG_P
    assert json.loads(json.dumps(verdict.to_dict()))["verdict"] == "different"


def test_scores_are_conformal_p_values_falling_with_distance(model):
    x = draw(300, seed=4, shift=0.1)
    scores, distances = model.scores(x), model.distances(x)
    assert np.all((scores > 0) & (scores <= 1))
    order = np.argsort(distances)
    assert np.all(np.diff(scores[order]) <= 0)
    assert model.scores(model.mean[None, :] + 1000.0)[0] == pytest.approx(1 / (1 + model.held_out.size))


def test_the_float32_file_round_trips_and_a_wrong_record_is_one_clear_error(model, tmp_path):
    path = model.save(tmp_path / "site_model.f32")
    record = json.loads(json.dumps(model.describe()))
    assert path.stat().st_size == 4 * record["layout"]["values"]
    again = load_site_model(path, record)
    x = draw(20, seed=5)
    assert np.array_equal(again.scores(x), model.scores(x)) and again.fitted_on == model.fitted_on == 2250
    with pytest.raises(ValueError, match="site_model.f32: not a mahalanobis-pca site model"):
        load_site_model(path, {**record, "layout": {**record["layout"], "values": 7}})
    with pytest.raises(ValueError, match="cannot read the site model"):
        load_site_model(tmp_path / "absent.f32", record)
    with pytest.raises(ValueError, match=r"expected features of shape \(N, 96\)"):
        model.scores(np.zeros((2, 95)))


def test_fitting_is_seeded_and_refuses_too_few_or_broken_features():
    x = draw(200, seed=6)
    assert fit_site_model(x, seed=1).to_bytes() == fit_site_model(x, seed=1).to_bytes()
    assert fit_site_model(x, seed=1).to_bytes() != fit_site_model(x, seed=2).to_bytes()
    with pytest.raises(ValueError, match="too few"):
        fit_site_model(x[:40])
    broken = x.copy()
    broken[3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit_site_model(broken)


def test_more_components_than_images_are_cut_to_what_the_images_support():
    model = fit_site_model(draw(100, seed=8), components=500)
    assert model.components.shape == (74, D) and model.describe()["components"] == 74
    np.testing.assert_allclose(model.components @ model.components.T, np.eye(74), atol=1e-4)


def test_the_binomial_tail_and_the_wilson_interval_against_direct_formulas():
    for k, n, p in [(0, 50, 0.05), (3, 50, 0.05), (8, 50, 0.05), (50, 50, 0.05), (12, 30, 0.3)]:
        direct = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binomial_upper_tail(k, n, p) == pytest.approx(direct, rel=1e-9)
    low, high = wilson_interval(5, 50)        # a textbook case
    assert (round(low, 4), round(high, 4)) == (0.0435, 0.2136)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def test_a_site_of_too_few_images_is_not_judged():
    verdict = judge_site([True] * (MIN_SITE_IMAGES - 1))
    assert verdict.verdict == "too few images" and "too few images" in verdict.words


def _subspace_and_off_subspace(seed: int = 0):
    """Training features on a 4-dimensional subspace of 32 (plus small isotropic noise); 'elsewhere' images move
    off that subspace only, with the same in-subspace scores: invisible to the subspace distance."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((32, 4)))[0].T            # (4, 32) orthonormal rows
    train = rng.standard_normal((400, 4)) * [5, 4, 3, 2] @ basis + 0.1 * rng.standard_normal((400, 32))
    home = rng.standard_normal((200, 4)) * [5, 4, 3, 2] @ basis + 0.1 * rng.standard_normal((200, 32))
    away = home + 0.6 * rng.standard_normal((200, 32)) @ (np.eye(32) - basis.T @ basis)
    return train, home, away


def test_the_residual_sees_images_that_leave_the_subspace_and_the_subspace_distance_does_not():
    train, home, away = _subspace_and_off_subspace()
    labels = np.r_[np.zeros(len(home)), np.ones(len(away))]
    plain = fit_site_model(train, components=4)
    residual = fit_site_model(train, components=4, residual=True)
    assert plain.residual_scale == 0 and residual.residual_scale > 0
    assert roc_auc(labels, plain.distances(np.r_[home, away])) < 0.65
    assert roc_auc(labels, residual.distances(np.r_[home, away])) > 0.99
    assert 0.01 < residual.flags(home).mean() < 0.12          # still conformal on images like the training ones


def test_the_residual_log_likelihood_is_the_gaussian_of_the_ppca_covariance():
    train, home, _ = _subspace_and_off_subspace(1)
    model = fit_site_model(train, components=4, residual=True)
    w = model.components.T.astype(np.float64) / model.scales.astype(np.float64)     # (D, K): sqrt(variance) columns
    cov = w @ w.T + np.eye(32) / model.residual_scale
    centred = home[:5] - model.mean
    _, log_det = np.linalg.slogdet(cov)
    direct = -0.5 * (np.einsum("nd,nd->n", centred @ np.linalg.inv(cov), centred) + log_det + 32 * np.log(2 * np.pi))
    np.testing.assert_allclose(model.log_likelihood(home[:5]), direct, atol=5e-3)   # float32 features
    with pytest.raises(ValueError, match="residual"):
        fit_site_model(train, components=4).log_likelihood(home[:5])


def test_without_the_residual_the_distance_is_the_shipped_subspace_rms():
    train, home, _ = _subspace_and_off_subspace(2)
    model = fit_site_model(train, components=4)
    z = (home.astype(np.float32) - model.mean) @ model.components.T * model.scales
    np.testing.assert_array_equal(model.distances(home), np.sqrt(np.mean(np.square(z, dtype=np.float64), axis=1)))


def _bundle_with(site_record: dict) -> dict:
    """A minimal valid bundle whose features output the site record reads."""
    from fracture_edge.edge_runtime.preprocessing import InputContract

    return {"schema_version": 1, "labels": ["not_fractured", "fractured"], "positive_label": "fractured",
            "output": {"kind": "sigmoid", "positive_index": 0,
                       "extra": {"features": {"shape": [site_record["features"]], "meaning": "pooled features"}}},
            "thresholds": {"balanced": 0.4, "screening": 0.1, "default": "balanced"},
            "input": InputContract(size=64).to_dict(), "artifacts": {}, "site_model": site_record}


def _saved(model, folder) -> dict:
    """Save the model into `folder` as export does; its bundle record (through JSON, as bundle.json holds it)."""
    from fracture_edge.edge_runtime.bundle import artifact_record
    from fracture_edge.edge_runtime.site_model import SITE_FILE

    path = model.save(folder / SITE_FILE)
    return json.loads(json.dumps({**model.describe(), "file": SITE_FILE, **artifact_record(path)}))


def test_a_ppca_record_round_trips_through_bundle_json_with_its_residual_scale(tmp_path):
    from fracture_edge.edge_runtime.bundle import load_bundle, save_bundle
    from fracture_edge.edge_runtime.site_model import PPCA_METHOD, site_model_for

    train, home, away = _subspace_and_off_subspace(3)
    model = fit_site_model(train, components=4, residual=True)
    record = _saved(model, tmp_path)
    assert record["method"] == PPCA_METHOD and record["residual_scale"] == model.residual_scale > 0
    save_bundle(tmp_path, _bundle_with(record))
    again = site_model_for(load_bundle(tmp_path), tmp_path)
    assert again.residual_scale == model.residual_scale
    assert np.array_equal(again.held_out, model.held_out)             # the stored distances are recomputed alike
    both = np.r_[home, away]
    assert np.array_equal(again.distances(both), model.distances(both))
    assert np.array_equal(again.scores(both), model.scores(both))


def test_an_old_subspace_record_is_still_read_and_scores_bit_for_bit_as_before(model, tmp_path):
    from fracture_edge.edge_runtime.bundle import validate_bundle
    from fracture_edge.edge_runtime.site_model import METHOD

    record = _saved(model, tmp_path)
    assert record["method"] == METHOD == "mahalanobis-pca" and "residual_scale" not in record
    validate_bundle(_bundle_with(record))
    again = load_site_model(tmp_path / record["file"], record)
    x = draw(50, seed=9)
    z = (x.astype(np.float32) - model.mean) @ model.components.T * model.scales
    assert again.residual_scale == 0.0
    np.testing.assert_array_equal(again.distances(x), np.sqrt(np.mean(np.square(z, dtype=np.float64), axis=1)))


@pytest.mark.parametrize("change, message", [
    ({"method": "ppca-v2"}, "site_model.method 'ppca-v2' is not one this fracture-edge reads"),
    ({"method": "ppca", "residual_scale": None}, "needs a positive residual_scale, got None"),
    ({"method": "ppca", "residual_scale": -1.0}, "needs a positive residual_scale, got -1.0"),
])
def test_an_unknown_method_or_a_ppca_record_without_its_scale_is_refused_in_one_line(model, tmp_path, change,
                                                                                       message):
    record = {**_saved(model, tmp_path), **change}
    with pytest.raises(ValueError, match=message) as error:
        load_site_model(tmp_path / record["file"], record)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("change, problem", [
    ({"method": "ppca-v2"}, "site_model.method must be one of 'mahalanobis-pca', 'ppca'"),
    ({"method": "ppca"}, "site_model.residual_scale must be a number > 0, got None"),
    ({"method": "ppca", "residual_scale": 0.5, "component_choice": {"chosen": 7}},
     "site_model.component_choice.chosen must be site_model.components (32)"),
])
def test_the_schema_refuses_an_unknown_method_a_missing_scale_and_a_choice_of_another_k(model, tmp_path, change,
                                                                                         problem):
    from fracture_edge.edge_runtime.bundle import BundleError, validate_bundle

    with pytest.raises(BundleError, match=re.escape(problem)) as error:
        validate_bundle(_bundle_with({**_saved(model, tmp_path), **change}), "bundle.json")
    assert str(error.value).count("\n") == 0


def test_copies_under_an_invisible_change_are_fitted_beside_the_images_and_no_longer_flagged():
    from fracture_edge.edge_runtime.site_model import fit_site_models
    rng = np.random.default_rng(3)
    scale = np.r_[np.full(4, 3.0), np.full(28, 0.3)]
    train = rng.normal(0, 1, (600, 32)) * scale
    change = np.zeros(32)
    change[20] = 3.0                                    # an invisible change moves a quiet direction
    copies = train + change + rng.normal(0, 0.05, train.shape)
    test = rng.normal(0, 1, (400, 32)) * scale + change
    plain = fit_site_models(train, (4,), residual=True)[4]
    shown = fit_site_models(train, (4,), residual=True, copies=copies)[4]
    assert plain.flags(test).mean() > 0.9               # never shown: the change reads as a new site
    assert shown.flags(test).mean() < 0.15              # shown: like the training data
    assert shown.fitted_on == 2 * plain.fitted_on
    clean = rng.normal(0, 1, (400, 32)) * scale          # held-out images calibrate clean: ~5 % flagged
    assert shown.flags(clean).mean() < 0.12


def test_copies_must_match_the_features():
    from fracture_edge.edge_runtime.site_model import fit_site_models
    x = np.random.default_rng(0).normal(size=(100, 8))
    with pytest.raises(ValueError, match="copies"):
        fit_site_models(x, (2,), copies=x[:50])
