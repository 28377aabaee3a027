"""The ppca site model's number of components (edge_runtime/site_components.py) on constructed features."""
from __future__ import annotations

import numpy as np
import pytest

from fracture_edge.edge_runtime.site_components import (CANDIDATE_COMPONENTS, candidate_components,
                                                          choose_components, held_out_features)
from fracture_edge.edge_runtime.site_model import PPCA_METHOD, fit_site_model

D = 96


def strong_directions(n: int, seed: int, rank: int = 16) -> np.ndarray:
    """`rank` strong directions (standard deviations 10 down to 3) of a fixed basis plus isotropic noise (sd 1)."""
    basis = np.linalg.qr(np.random.default_rng(99).standard_normal((D, rank)))[0].T     # (rank, D) orthonormal
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, rank)) * np.linspace(10, 3, rank) @ basis + rng.standard_normal((n, D)) + 2.0


@pytest.mark.parametrize("rank", [16, 32])
def test_the_val_likelihood_picks_the_true_number_of_strong_directions(rank):
    choice = choose_components(strong_directions(2000, seed=0, rank=rank), strong_directions(500, seed=1, rank=rank))
    assert set(choice.log_likelihood) == {8, 16, 32, 64} and choice.components == rank
    assert choice.model.components.shape == (rank, D) and choice.model.residual_scale > 0
    assert choice.model.describe()["method"] == PPCA_METHOD
    record = choice.to_dict()
    assert record["chosen"] == rank and set(record["mean_log_likelihood"]) == {"8", "16", "32", "64"}


def test_the_held_out_training_images_choose_alike_and_the_chosen_model_is_the_plain_fit_at_that_k():
    train = strong_directions(2000, seed=2)
    choice = choose_components(train, held_out_features(train, seed=3), seed=3)
    assert choice.components == 16
    plain = fit_site_model(train, components=16, seed=3, residual=True)
    assert choice.model.to_bytes() == plain.to_bytes() and choice.model.residual_scale == plain.residual_scale


@pytest.mark.parametrize("images, features, expected", [
    (1000, 1024, list(CANDIDATE_COMPONENTS)),       # the default export: every candidate
    (80, 1024, [8, 16, 32]),                        # the tiny demo: 60 images fit it, K < 59
    (1000, 100, [8, 16, 32, 64]),                   # K < D leaves directions outside the subspace
    (1000, 8, []),                                  # too few features: the subspace distance alone
])
def test_candidates_larger_than_the_fit_images_or_features_are_skipped(images, features, expected):
    assert candidate_components(images, features) == expected
    if not expected:
        assert choose_components(np.ones((images, features)), np.ones((5, features))) is None


def test_choosing_images_of_another_size_or_broken_are_one_clear_error():
    train = strong_directions(400, seed=4)
    with pytest.raises(ValueError, match="finite"):
        choose_components(train, np.full((5, D), np.nan))
    with pytest.raises(ValueError, match=r"expected features of shape \(N, 96\)"):
        choose_components(train, np.zeros((5, D - 1)))
