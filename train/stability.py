"""Stability training (issue 21): a logit-consistency term between each training view and its dithered copy.

The frozen blocks turn a +-1 grey-level dither into a perturbation of the cached activations; the dithered copy
of every training view is cached too (the backbone sees the real perturbation), and the trainable part is fitted
on  BCE(view) + weight * (logit(view) - logit(dithered view))^2,  both passes sharing one dropout mask (else
the term would penalise dropout, not the dither). With weight 0 the loss is exactly the plain BCE.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

DITHER_LEVELS = 1       # the +-1 grey-level dither of the stability probe (edge_runtime/shifts.py dither-1)
PARTNER_SEED = 10_000   # partner dithers are drawn from seed + PARTNER_SEED + view: never the probe's seed 0
VIEW_DITHER_SEED = 20_000   # --view-dither noise on every training view: seed + VIEW_DITHER_SEED + view
EPS = 1e-7


def dither_augmenter(seed: int, augment: Callable[[np.ndarray], np.ndarray] | None = None,
                     levels: int = DITHER_LEVELS) -> Callable[[np.ndarray], np.ndarray]:
    """batch -> dither(augment(batch)): every pixel + a uniform integer in [-levels, levels], the same on R, G, B,
    from one generator across calls (batches fed in order give the same draw whatever the batch size)."""
    rng = np.random.default_rng(seed)

    def apply(batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(augment(batch) if augment else batch)
        step = rng.integers(-levels, levels + 1, batch.shape[:3])[..., None]
        return np.clip(batch.astype(np.int16) + step, 0, 255).astype(np.uint8)
    return apply


def consistency_loss(weight: float):
    """Keras loss on y_pred = (P(view), P(partner)) per row: BCE on the view + weight * squared logit gap."""
    from keras import ops

    def loss(y_true, y_pred):
        y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1,))
        p, q = ops.clip(y_pred[:, 0], EPS, 1 - EPS), ops.clip(y_pred[:, 1], EPS, 1 - EPS)
        bce = -(y * ops.log(p) + (1 - y) * ops.log(1 - p))
        gap = (ops.log(p) - ops.log(1 - p)) - (ops.log(q) - ops.log(1 - q))
        return bce + weight * ops.square(gap)
    return loss


def pair_model(body, output_layer, input_shape: tuple, feature_dim: int, dropout: float):
    """(view, partner) -> (P(view), P(partner)) through `body` (shared) and the model's output layer, with the
    same dropout mask on both pooled feature vectors."""
    import keras

    view, partner = keras.Input(input_shape, name="view"), keras.Input(input_shape, name="partner")
    stack = keras.layers.Concatenate(axis=1)([keras.layers.Reshape((1, feature_dim))(body(view)),
                                              keras.layers.Reshape((1, feature_dim))(body(partner))])
    stack = keras.layers.Dropout(dropout, noise_shape=(None, 1, feature_dim), name="pair_dropout")(stack)
    return keras.Model([view, partner], keras.layers.Reshape((2,))(output_layer(stack)), name="stability_pair")


def fit_pairs(pair, x: np.ndarray, partner: np.ndarray, y: np.ndarray, sample_weight: np.ndarray,
              val_score: Callable[[], float], weight: float, epochs: int, lr: float, batch_size: int,
              patience: int, stage: str) -> dict:
    """Adam on consistency_loss, early stopping on `val_score()` (validation AUC) with the best weights restored,
    as Keras EarlyStopping(patience, restore_best_weights) does for the plain stages."""
    from .stages import fit_scored

    return fit_scored(pair, [x, partner], y, sample_weight, val_score, consistency_loss(weight), epochs, lr,
                      batch_size, patience, stage)
