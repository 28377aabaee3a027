"""A logistic head on the pooled features: applied by the runtime, fitted on a device (numpy only).

    head = AdaptedHead.from_bundle(bundle)          # None unless bundle.json has an adapted_head
    head.probabilities(features)                    # sigmoid(features . w + b)
    fit_logistic(X, y, C)                           # L2-regularised, class-weighted, fitted by Newton

The fit minimises 0.5 |w|^2 + C * sum_i s_i * logloss_i (the intercept is not penalised; s_i = n / (2 n_class):
both classes weigh the same), on features standardised with the training images' mean and SD; the
standardisation is folded back into w and b, so the runtime needs only w and b. With fewer images than
features (a few dozen X-rays, 1,024 features) the optimal w lies in the span of the training rows, so
Newton runs in that n-dimensional space (thin SVD): exact, and a few milliseconds per fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_NEWTON_STEPS = 100
TOLERANCE = 1e-10


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow warnings for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])
    out[~positive] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class AdaptedHead:
    """P(positive) = sigmoid(output . weights + bias), `output` naming one of the artifact's extra outputs."""

    output: str
    weights: np.ndarray = field(compare=False)     # float64 (d,)
    bias: float = 0.0

    @classmethod
    def from_bundle(cls, bundle: dict) -> "AdaptedHead | None":
        """The bundle's adapted_head (validated by bundle_schema), or None when it has none."""
        head = bundle.get("adapted_head")
        if not head:
            return None
        return cls(head["output"], np.asarray(head["weights"], dtype=np.float64), float(head["bias"]))

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64).reshape(len(features), -1) @ self.weights + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(features))


def class_weights(y: np.ndarray) -> np.ndarray:
    """Per-image weights n / (2 n_class): each class contributes half of the loss."""
    y = np.asarray(y).astype(np.int64)
    counts = np.bincount(y, minlength=2).astype(np.float64)
    if counts.min() == 0:
        raise ValueError("a class-weighted fit needs images of both classes")
    return (y.size / (2.0 * counts))[y]


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, SD) per feature; a constant feature (SD 0, e.g. a dead channel) keeps SD 1."""
    mean, sd = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(sd > 1e-12, sd, 1.0)


def _objective(z: np.ndarray, y: np.ndarray, s: np.ndarray, theta: np.ndarray, C: float) -> float:
    logits = theta[0] + z @ theta[1:]
    loss = np.logaddexp(0.0, logits) - y * logits               # -log p(y | logit), stable
    return float(0.5 * theta[1:] @ theta[1:] + C * (s * loss).sum())


def newton_logistic(z: np.ndarray, y: np.ndarray, s: np.ndarray, C: float) -> np.ndarray:
    """theta = [b, beta] minimising 0.5 |beta|^2 + C sum s_i logloss(b + z_i . beta), by damped Newton."""
    n, d = z.shape
    design = np.hstack([np.ones((n, 1)), z])
    penalty = np.eye(d + 1)
    penalty[0, 0] = 0.0
    theta = np.zeros(d + 1)
    current = _objective(z, y, s, theta, C)
    for _ in range(MAX_NEWTON_STEPS):
        p = sigmoid(design @ theta)
        gradient = C * design.T @ (s * (p - y)) + penalty @ theta
        hessian = C * (design * (s * p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian + 1e-12 * np.eye(d + 1), gradient)
        scale = 1.0
        while scale > 1e-8:                                      # halve until the objective goes down
            candidate = theta - scale * step
            value = _objective(z, y, s, candidate, C)
            if value <= current + 1e-12:
                break
            scale /= 2.0
        theta, previous, current = candidate, current, value
        if np.abs(scale * step).max() < TOLERANCE or previous - current < TOLERANCE * max(1.0, abs(current)):
            break
    return theta


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float) -> AdaptedHead:
    """The class-weighted, L2-regularised logistic head on features x (n, d), labels y in {0, 1}."""
    return fit_path(x, y, (C,))[0]


def fit_path(x: np.ndarray, y: np.ndarray, Cs) -> list[AdaptedHead]:
    """fit_logistic for each C of Cs, sharing the standardisation and the SVD (they do not depend on C)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if any(not C > 0 for C in Cs):
        raise ValueError(f"every C must be > 0, got {list(Cs)}")
    mean, sd = standardisation(x)
    standard = (x - mean) / sd
    _, singular, vt = np.linalg.svd(standard, full_matrices=False)      # w lies in the rows' span
    keep = singular > (singular.max() if singular.size else 0.0) * 1e-10
    basis, weights_per_image = vt[keep].T, class_weights(y)
    reduced = standard @ basis
    heads = []
    for C in Cs:
        theta = newton_logistic(reduced, y, weights_per_image, float(C))
        weights = (basis @ theta[1:]) / sd                               # standardised -> raw features
        heads.append(AdaptedHead("features", weights, float(theta[0] - mean @ weights)))
    return heads
