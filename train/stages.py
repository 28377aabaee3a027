"""The two training stages: (1) head on cached pooled features, (2) fine-tune the last block(s) on cached activations."""
from __future__ import annotations

import logging

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
    import keras

    inputs = keras.Input(train_x.shape[1:], name="pooled_features")
    x = model.get_layer("head_dropout")(inputs)
    head = keras.Model(inputs, model.get_layer(OUTPUT_NAME)(x), name="head")
    return _fit(head, "stage 1 (head)", train_x, train_y, val_x, val_y, weights, epochs, lr, batch_size, patience)


def fit_tail(tail, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             weights: dict[int, float], epochs: int, lr: float, batch_size: int, patience: int) -> dict:
    """Stage 2: fine-tune the trainable tail (last dense block(s) + head) on cached activations."""
    return _fit(tail, "stage 2 (fine-tune)", train_x, train_y, val_x, val_y, weights, epochs, lr, batch_size,
                patience)


def pooled_features(model, from_layer: str):
    """Sub-model from a cached activation to the pooled feature vector (shares weights with `model`)."""
    import keras

    return keras.Model(model.get_layer(from_layer).output, model.get_layer(FEATURE_LAYER).output)
