"""How many principal components the "ppca" site model keeps (docs/site-check.md, "Second design").

Fixed before it ran on any model: K is the candidate with the highest mean log-likelihood, under the model
fitted on the training images, of images it was not fitted on: the home source's val images (export uses the
bundle's data, val split), else the held-out part of the training images. No test image and no AUROC enters
the choice. numpy only; export calls it once (export/site_fit.py), as does experiments/site_check_eval.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .site_model import HOLDOUT_SHARE, SiteModel, fit_site_models, holdout_split

CANDIDATE_COMPONENTS = (8, 16, 32, 64, 128, 256)
RULE = "highest mean log-likelihood per image"


@dataclass(frozen=True)
class ComponentChoice:
    """The chosen model, its K and every candidate's mean log-likelihood on the choosing images."""

    model: SiteModel
    components: int
    log_likelihood: dict[int, float] = field(default_factory=dict)   # candidate K -> mean per image

    def to_dict(self) -> dict:
        return {"chosen": self.components, "rule": RULE,
                "mean_log_likelihood": {str(k): round(v, 3) for k, v in self.log_likelihood.items()}}


def candidate_components(images: int, features: int, holdout_share: float = HOLDOUT_SHARE) -> list[int]:
    """The candidate K that leave directions outside the subspace (K < D) and that the images fitting the model
    support (K < fitted - 1)."""
    fitted = images - int(round(images * holdout_share))
    return [k for k in CANDIDATE_COMPONENTS if k < min(features, fitted - 1)]


def held_out_features(train: np.ndarray, seed: int = 0) -> np.ndarray:
    """The training features fit_site_models holds out (same split, same seed): the fallback choosing set."""
    return np.asarray(train)[holdout_split(len(train), HOLDOUT_SHARE, seed)[1]]


def choose_components(train: np.ndarray, choosing: np.ndarray, seed: int = 0,
                      copies: np.ndarray | None = None) -> ComponentChoice | None:
    """The ppca model at the candidate K whose mean log-likelihood of `choosing` (N, D) is highest; None when
    no candidate fits the training features (too few images or features). copies: see fit_site_models."""
    candidates = candidate_components(*np.shape(train))
    if not candidates:
        return None
    choosing = np.asarray(choosing, dtype=np.float32)
    if choosing.ndim != 2 or not len(choosing) or not np.isfinite(choosing).all():
        raise ValueError(f"site model: the images choosing K must give finite (N, D) features, got {choosing.shape}")
    models = fit_site_models(train, tuple(candidates), seed=seed, residual=True, copies=copies)
    likelihood = {k: float(np.mean(m.log_likelihood(choosing))) for k, m in models.items()}
    best = max(likelihood, key=likelihood.get)
    return ComponentChoice(models[best], best, likelihood)
