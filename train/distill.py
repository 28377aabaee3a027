"""Distillation (issue 24): a student fitted to the labels and to a trained teacher run's logits.

The teacher (a fracture-edge run folder, e.g. the DenseNet121 `runs/fracatlas-320`) is run once over the
training images only, at its own input contract (bundle.json), never over val or test. Its logit is the
pre-sigmoid value of its output unit (features . kernel + bias: no rounding through a saturated probability).
Every training view of an image (original and augmented) is fitted to the teacher's logit of the original
image. The loss per image, with the student's logit z, the teacher's t, the label y, weight alpha and
temperature T:

    alpha * BCE(y, sigmoid(z)) + (1 - alpha) * T^2 * BCE(sigmoid(t / T), sigmoid(z / T))

(T^2 keeps the soft term's gradient on the scale of the hard one, Hinton et al. 2015). alpha = 1 is exactly
the plain loss.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.metrics import roc_auc
from ..edge_runtime.preprocessing import InputContract, load_batch
from ..edge_runtime.progress import progress
from . import stages
from .model import OUTPUT_NAME, trainable_tail

log = logging.getLogger(__name__)

EPS = 1e-7
TEACHER_BATCH = 32


def distillation_loss(alpha: float, temperature: float):
    """Keras loss on y_true = (label, teacher logit) per row and y_pred = P(fractured) of the student."""
    from keras import ops

    def loss(y_true, y_pred):
        y, teacher = ops.cast(y_true[:, 0], y_pred.dtype), ops.cast(y_true[:, 1], y_pred.dtype)
        p = ops.clip(ops.reshape(y_pred, (-1,)), EPS, 1 - EPS)
        z = ops.log(p) - ops.log(1 - p)
        hard = ops.softplus(z) - y * z                        # BCE(y, sigmoid(z)), from the logit
        soft_target, zt = ops.sigmoid(teacher / temperature), z / temperature
        soft = ops.softplus(zt) - soft_target * zt - _entropy(soft_target)   # KL: 0 when the student matches
        return alpha * hard + (1 - alpha) * temperature ** 2 * soft
    return loss


def _entropy(q):
    """Binary entropy of q (a constant of the student): subtracting it makes the soft term a KL divergence,
    whose minimum is 0, without changing any gradient."""
    from keras import ops

    q = ops.clip(q, EPS, 1 - EPS)
    return -(q * ops.log(q) + (1 - q) * ops.log(1 - q))


def load_teacher(run: str):
    """(the teacher's Keras model, its bundle.json) from a run folder, or one clear line."""
    import keras

    folder = Path(run)
    model_path, bundle_path = folder / "model.keras", folder / "bundle.json"
    if not model_path.is_file() or not bundle_path.is_file():
        raise FractureEdgeError(f"{run}: not a trained run folder (--teacher needs its model.keras and bundle.json)")
    bundle = json.loads(bundle_path.read_text())
    model = keras.models.load_model(model_path, compile=False)
    try:
        model.get_layer(OUTPUT_NAME)
    except ValueError:
        raise FractureEdgeError(f"{run}: the teacher model has no {OUTPUT_NAME!r} output unit") from None
    return model, bundle


def teacher_logits(model, contract: InputContract, paths: list[str]) -> np.ndarray:
    """The teacher's pre-sigmoid logit of each image, decoded at the teacher's own input contract."""
    import keras

    head = model.get_layer(OUTPUT_NAME)
    kernel, bias = (np.asarray(w, np.float64) for w in head.get_weights())
    pooled = keras.Model(model.input, head.input)
    out = np.empty(len(paths), np.float64)
    starts = range(0, len(paths), TEACHER_BATCH)
    for start in progress(starts, desc="teacher logits (train)", total=len(starts)):
        batch, kept, failed = load_batch(paths[start:start + TEACHER_BATCH], contract)
        if failed:
            raise FractureEdgeError(f"teacher could not read {failed[0][0]}: {failed[0][1]}")
        features = pooled.predict_on_batch(np.asarray(batch, np.float32))
        out[start:start + len(kept)] = (np.asarray(features, np.float64) @ kernel).ravel() + bias[0]
    return out


def teacher_targets(run: str, train_split) -> tuple[np.ndarray, dict]:
    """(teacher logits of the training images, aligned with train_split; the record kept in bundle.json)."""
    model, bundle = load_teacher(run)
    contract = InputContract.from_dict(bundle["input"])
    logits = teacher_logits(model, contract, [str(s.path) for s in train_split.samples])
    auc = roc_auc(train_split.targets, logits)
    log.info("teacher %s: AUC %.4f on the %d training images it is distilled from", run, auc, len(logits))
    digest = hashlib.sha256((Path(run) / "model.keras").read_bytes()).hexdigest()
    record = {"run": str(Path(run).resolve()), "model": bundle.get("model", "DenseNet121"),
              "backbone": bundle.get("backbone", "densenet121"), "input_size": contract.size,
              "model_sha256": digest, "train_auc": round(float(auc), 4), "images": int(len(logits)),
              "targets": "teacher logit of the original image, for every training view"}
    return logits, record


def fit_distilled(model, layer: str, cached: dict, feats: dict, val_y: np.ndarray, weights: dict,
                  teacher: np.ndarray, opts) -> dict:
    """Both stages fitted on distillation_loss (labels + teacher logits), early-stopped on val AUC."""
    from .model import FEATURE_LAYER

    y = cached["train_y"]
    targets = np.stack([y, np.tile(teacher, opts.views)], axis=1)
    sample_weight = np.where(y == 1, weights[1], weights[0])
    loss = distillation_loss(opts.distill_alpha, opts.distill_temperature)
    head = stages.head_model(model, feats["train"].shape[1:])
    score = lambda net, x: roc_auc(val_y, net.predict(x, batch_size=256, verbose=0).ravel())  # noqa: E731
    history = {"head": stages.fit_scored(head, feats["train"], targets, sample_weight, lambda: score(head, feats["val"]),
                                         loss, opts.head_epochs, opts.head_lr, opts.batch_size * 2, opts.patience,
                                         "stage 1 (head, distilled)")}
    if layer != FEATURE_LAYER and opts.finetune_epochs:
        tail = trainable_tail(model, layer)
        history["finetune"] = stages.fit_scored(tail, cached["train"], targets, sample_weight,
                                                lambda: score(tail, cached["val"]), loss, opts.finetune_epochs,
                                                opts.finetune_lr, opts.batch_size, opts.patience,
                                                "stage 2 (fine-tune, distilled)")
    return history
