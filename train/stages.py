"""The two training stages: (1) head on cached pooled features, (2) fine-tune the last block(s) on cached activations."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from .model import FEATURE_LAYER, OUTPUT_NAME

log = logging.getLogger(__name__)


def _early_stopping(patience: int):
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience,
                                         restore_best_weights=True, verbose=0)


def _history(fit_result) -> dict[str, list[float]]:
    return {k: [float(v) for v in vals] for k, vals in fit_result.history.items()}


def _fit(model, stage: str, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
         weights: dict[int, float], epochs: int, lr: float, batch_size: int, patience: int) -> dict:
    """Adam + weighted BCE, early stopping on validation AUC with the best weights restored."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    result = model.fit(train_x, train_y, validation_data=(val_x, val_y), epochs=epochs, batch_size=batch_size,
                       class_weight=weights, shuffle=True, callbacks=[_early_stopping(patience)], verbose=2)
    log.info("%s: best val AUC %.4f", stage, max(result.history.get("val_auc", [float("nan")])))
    return _history(result)


def fit_head(model, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             weights: dict[int, float], epochs: int, lr: float, batch_size: int, patience: int) -> dict:
    """Stage 1: train dropout + dense head (shared with `model`) on cached pooled features."""
    head = head_model(model, train_x.shape[1:])
    return _fit(head, "stage 1 (head)", train_x, train_y, val_x, val_y, weights, epochs, lr, batch_size, patience)


def head_model(model, feature_shape: tuple):
    """Pooled features -> dropout -> the output unit, sharing the head's layers with `model`."""
    import keras

    inputs = keras.Input(feature_shape, name="pooled_features")
    x = model.get_layer("head_dropout")(inputs)
    return keras.Model(inputs, model.get_layer(OUTPUT_NAME)(x), name="head")


def fit_scored(model, x, y: np.ndarray, sample_weight: np.ndarray, val_score: Callable[[], float], loss,
               epochs: int, lr: float, batch_size: int, patience: int, stage: str) -> dict:
    """Adam on a custom `loss`, early stopping on `val_score()` (validation AUC) with the best weights restored,
    as Keras EarlyStopping(patience, restore_best_weights) does for the plain stages (for losses whose targets
    are not the labels alone, so Keras' own val_auc cannot be computed)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    history: dict[str, list[float]] = {"loss": [], "val_auc": []}
    best, best_weights, waited = -np.inf, None, 0
    for epoch in range(epochs):
        result = model.fit(x, y.astype("float32"), sample_weight=sample_weight.astype("float32"),
                           epochs=1, batch_size=batch_size, shuffle=True, verbose=0)
        auc = float(val_score())
        history["loss"].append(float(result.history["loss"][0]))
        history["val_auc"].append(auc)
        log.info("%s epoch %d/%d: loss %.4f, val AUC %.4f", stage, epoch + 1, epochs, history["loss"][-1], auc)
        if auc > best:
            best, best_weights, waited = auc, [v.numpy().copy() for v in model.trainable_variables], 0
        else:
            waited += 1
            if waited >= patience:
                break
    if best_weights is not None:
        for variable, value in zip(model.trainable_variables, best_weights):
            variable.assign(value)
    log.info("%s: best val AUC %.4f", stage, best)
    return history


def fit_tail(tail, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             weights: dict[int, float], epochs: int, lr: float, batch_size: int, patience: int) -> dict:
    """Stage 2: fine-tune the trainable tail (last dense block(s) + head) on cached activations."""
    return _fit(tail, "stage 2 (fine-tune)", train_x, train_y, val_x, val_y, weights, epochs, lr, batch_size,
                patience)


def pooled_features(model, from_layer: str):
    """Sub-model from a cached activation to the pooled feature vector (shares weights with `model`)."""
    import keras

    return keras.Model(model.get_layer(from_layer).output, model.get_layer(FEATURE_LAYER).output)
