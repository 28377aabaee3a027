"""The site check's own-built evaluation (experiments/site_check_eval.py) on constructed features: no model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fracture_edge.edge_runtime.dataset import Sample
from fracture_edge.edge_runtime.site_components import CANDIDATE_COMPONENTS
from fracture_edge.experiments.site_check_eval import REFERENCE, SOURCES, source_rows

D = 40


def constructed(far: float, seed: int = 0) -> tuple[list[Sample], np.ndarray]:
    """Home images (373x454, leg) in train and test; a second device (hip) and a shoulder source (373x454)
    `far` away on axes 0 and 1, half of each in train."""
    rng = np.random.default_rng(seed)
    samples, features = [], []
    for split, n in (("train", 400), ("val", 60), ("test", 120)):
        for i in range(n):
            samples.append(Sample(Path(f"{split}/home{i}.jpg"), "not_fractured", split,
                                  meta={"orig_w": "373", "orig_h": "454", "region": "leg"}))
            features.append(rng.standard_normal(D))
    for i in range(80):                 # half of each source in train: the refit must leave them out
        split = "train" if i % 2 else "test"
        samples.append(Sample(Path(f"{split}/device{i}.jpg"), "fractured", split,
                              meta={"orig_w": "2304", "orig_h": "2880", "region": "hip"}))
        features.append(rng.standard_normal(D) + far * np.eye(D)[0])
        samples.append(Sample(Path(f"{split}/shoulder{i}.jpg"), "fractured", split,
                              meta={"orig_w": "454", "orig_h": "373", "region": "shoulder"}))
        features.append(rng.standard_normal(D) + far * np.eye(D)[1])
    return samples, np.asarray(features, np.float32)


def test_sources_far_from_home_are_ranked_apart_and_their_folders_judged_different():
    samples, features = constructed(far=8.0)
    rows = source_rows(samples, {REFERENCE: features}, seed=0)
    assert set(rows) == set(SOURCES)
    for name, row in rows.items():
        assert row["source_images"] == (80 if name == "another-device" else 160), name    # device images are hips
        assert row["home_test_images"] == (160 if name == "another-device" else 120), name
        cell = row["formats"][REFERENCE]
        assert cell["auroc"] > 0.99 and cell["source_folders_different"] > 0.95, name
        assert cell["home_folders_like"] > 0.9 and cell["home_flagged"] < 0.12, name
        assert cell["folders_unlike_reference"] == 0


def test_a_source_like_home_is_not_told_apart():
    samples, features = constructed(far=0.0)
    cell = source_rows(samples, {REFERENCE: features}, seed=0)["another-device"]["formats"][REFERENCE]
    assert 0.35 < cell["auroc"] < 0.65 and cell["source_folders_different"] < 0.1


def test_a_format_is_judged_on_the_same_folders_and_its_verdict_changes_are_counted():
    samples, features = constructed(far=2.5)
    noisy = features + np.random.default_rng(1).normal(0, 3.0, features.shape).astype(np.float32)
    rows = source_rows(samples, {REFERENCE: features, "faithful": features + 1e-6, "noisy": noisy}, seed=0)
    for row in rows.values():
        assert row["formats"]["faithful"]["folders_unlike_reference"] == 0
        assert row["formats"]["noisy"]["folders_unlike_reference"] > 0     # noise pushes home folders out


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_source_images_never_fit_the_site_model(name):
    samples, features = constructed(far=8.0)
    is_source = np.array([SOURCES[name][1](s) for s in samples])
    in_train = is_source & (np.array([s.split for s in samples]) == "train")
    poisoned = features.copy()
    poisoned[in_train] = 1e6                 # would wreck the mean and components if they were fitted on
    row = source_rows(samples, {REFERENCE: poisoned}, seed=0)[name]
    assert in_train.sum() >= 40 and row["fit_images"] == 400 + 40 * (name == "another-device")
    assert row["formats"][REFERENCE]["home_folders_like"] > 0.9


def test_the_residual_design_chooses_k_by_the_val_home_likelihood_alone():
    samples, features = constructed(far=8.0)
    rows = source_rows(samples, {REFERENCE: features}, seed=0, design="residual")
    split = np.array([s.split for s in samples])
    for name, row in rows.items():
        likelihood = row["design"]["val_log_likelihood"]
        assert set(likelihood) == {k for k in CANDIDATE_COMPONENTS if k < D} == {8, 16, 32}
        assert row["design"]["components"] == max(likelihood, key=likelihood.get)
        assert set(row["auroc_per_k"]) == set(likelihood)
        assert row["formats"][REFERENCE]["auroc"] > 0.99, name
    moved = features.copy()
    moved[split == "test"] *= 5.0           # test images (home and source) must not move the choice
    again = source_rows(samples, {REFERENCE: moved}, seed=0, design="residual")
    assert {n: r["design"] for n, r in again.items()} == {n: r["design"] for n, r in rows.items()}


def test_the_cost_row_times_the_shipped_ppca_model_at_its_chosen_k():
    """An old run (a mahalanobis-pca bundle record) is timed on the ppca model export would ship now, K chosen on
    the val images, the residual term included; a ppca run is timed on its own site model."""
    from types import SimpleNamespace

    from fracture_edge.edge_runtime.site_components import choose_components
    from fracture_edge.experiments.site_check_eval import scoring_cost_ms, shipped_site_model

    samples, features = constructed(far=8.0)
    old = SimpleNamespace(bundle={"site_model": {"method": "mahalanobis-pca"}}, site=None)
    site, how = shipped_site_model(old, samples, features, seed=0)
    split = np.array([s.split for s in samples])
    rng = np.random.default_rng(0)
    expected = choose_components(features[rng.permutation(np.flatnonzero(split == "train"))],
                                 features[np.random.default_rng(0).permutation(np.flatnonzero(split == "val"))], 0)
    assert how["method"] == "ppca" and how["components"] == expected.components == site.components.shape[0]
    assert site.residual_scale > 0 and how["residual_scale"] == site.residual_scale
    assert "mahalanobis-pca" in how["model"] and scoring_cost_ms(site, repeats=20) > 0
    own = SimpleNamespace(bundle={"site_model": {"method": "ppca", "components": 16, "residual_scale": 0.5}}, site=site)
    assert shipped_site_model(own, samples, features, seed=0) == (site, {
        "method": "ppca", "components": 16, "residual_scale": 0.5, "model": "the run's bundle"})


def test_the_sqrt_design_is_the_residual_design_on_square_rooted_features():
    samples, features = constructed(far=8.0)
    positive = np.abs(features) + 0.1
    by_sqrt = source_rows(samples, {REFERENCE: positive ** 2}, seed=0, design="residual-sqrt")
    by_hand = source_rows(samples, {REFERENCE: positive}, seed=0, design="residual")
    for name in SOURCES:
        assert by_sqrt[name]["formats"][REFERENCE] == pytest.approx(by_hand[name]["formats"][REFERENCE], rel=1e-4)
        assert by_sqrt[name]["design"]["components"] == by_hand[name]["design"]["components"]
        assert "sqrt" in by_sqrt[name]["design"]["method"] and "sqrt" not in by_hand[name]["design"]["method"]


def test_the_every_image_design_fits_on_every_home_training_image_and_the_others_on_the_cap(monkeypatch):
    from fracture_edge.experiments import site_check_eval

    samples, features = constructed(far=8.0)
    monkeypatch.setitem(site_check_eval.DESIGNS, "residual", site_check_eval.Design("residual", images=200))
    capped = source_rows(samples, {REFERENCE: features}, seed=0, design="residual")
    every = source_rows(samples, {REFERENCE: features}, seed=0, design="residual-all")
    for name in SOURCES:
        assert capped[name]["fit_images"] == 200
        assert every[name]["fit_images"] == 400 + 40 * (name == "another-device")   # every home training image
