"""`fracture-edge train`: data check -> cache activations -> head -> fine-tune -> thresholds -> run folder."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..edge_runtime.dataset import read_dataset, require_both_classes, select_split
from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.metrics import choose_thresholds
from ..edge_runtime.preprocessing import InputContract
from . import activations, distill, precision, stability, stages
from .augment import AUGMENTATIONS, view_augmenter
from .backbones import get_backbone
from .model import (FEATURE_LAYER, OUTPUT_NAME, build_model, estimate_batchnorm_statistics, feature_extractor,
                    trainable_tail)
from .options import TrainOptions
from .run_folder import RunSummary, write_run_folder

log = logging.getLogger(__name__)


def prepare_out_dir(opts: TrainOptions) -> Path:
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()) and not opts.overwrite:
        raise FractureEdgeError(f"{out}: run folder exists and is not empty (use --overwrite or another --out)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_splits(opts: TrainOptions, contract: InputContract) -> tuple[dict, dict]:
    """Read the dataset, check it for leakage, and load train/val/test as model inputs."""
    samples = read_dataset(opts.data)
    data_report = check_leakage(samples, opts)
    splits = {}
    for name in ("train", "val", "test"):
        chosen = select_split(samples, name, opts.data)
        if opts.max_images:
            chosen = _cap(chosen, opts.max_images, opts.seed)
        require_both_classes(chosen, f"{opts.data} [{name}]")
        splits[name] = activations.load_split(name, chosen, contract)
        if len(set(splits[name].targets.tolist())) < 2:
            raise FractureEdgeError(f"{opts.data} [{name}]: after skipping unreadable files one class has no images")
    return splits, data_report


def _cap(samples: list, n: int, seed: int) -> list:
    """A stratified, seeded subset of at most n samples (keeps both classes)."""
    rng = np.random.default_rng(seed)
    pos = [s for s in samples if s.target == 1]
    neg = [s for s in samples if s.target == 0]
    n_pos = max(1, round(n * len(pos) / len(samples)))
    pick = lambda group, k: [group[i] for i in sorted(rng.permutation(len(group))[:k])]  # noqa: E731
    return pick(pos, min(n_pos, len(pos))) + pick(neg, min(n - n_pos, len(neg)))


def check_leakage(samples: list, opts: TrainOptions) -> dict:
    """Run the data check; refuse a split where val/test images have copies in train unless allowed."""
    from .data_check import check_samples

    report = check_samples(samples, show_progress=True)
    summary = report.to_dict()
    if report.leak_count:
        message = (f"{opts.data}: {report.leak_count} validation/test image(s) have an exact or near copy in "
                   "train, so test metrics would be training metrics; fix the split "
                   "(fracture-edge data split) or pass --allow-leakage to train anyway (recorded in metrics)")
        if not opts.allow_leakage:
            raise FractureEdgeError(message)
        log.warning(message)
    return summary


def cache_inputs(model, splits: dict, opts: TrainOptions, scoring_model=None) -> tuple[dict, str]:
    """Activations entering the trainable tail (or pooled features when nothing is fine-tuned).

    The training views are written straight into one float16 array; an augmented view is made a batch at
    a time as it is fed (the same images, in the same order, as augmenting the whole split first).
    val/test go through `scoring_model` when given (the float32 model that is saved, under --mixed-precision).
    """
    layer = get_backbone(opts.backbone).tails.get(opts.finetune_from, FEATURE_LAYER)
    extractor = feature_extractor(model, layer)
    scoring = extractor if scoring_model is None else feature_extractor(scoring_model, layer)
    train = splits["train"]
    n = len(train.pixels)
    cached = {"train": np.empty((n * opts.views, *extractor.output.shape[1:]), np.float16),
              "train_y": np.tile(train.targets, opts.views)}
    for v in range(opts.views):
        activations.cache_activations(extractor, train.pixels, opts.batch_size, f"caching train view {v + 1}/{opts.views}",
                                      augment=training_view(opts, v), out=cached["train"][v * n:(v + 1) * n])
    if opts.stability:   # the dithered copy of every view, drawn afresh (never the probe's seed)
        cached["train_partner"] = np.empty_like(cached["train"])
        for v in range(opts.views):
            activations.cache_activations(extractor, train.pixels, opts.batch_size,
                                          f"caching dithered view {v + 1}/{opts.views}",
                                          augment=stability.dither_augmenter(opts.seed + stability.PARTNER_SEED + v,
                                                                             training_view(opts, v)),
                                          out=cached["train_partner"][v * n:(v + 1) * n])
    for name in ("val", "test"):
        cached[name] = activations.cache_activations(scoring, splits[name].pixels, opts.batch_size, f"caching {name}")
    return cached, layer


def training_view(opts: TrainOptions, v: int):
    """Training view v as a batch function (None: the original pixels): view 0 is the original, views 1..
    augmented (seed + v); with --view-dither each is then dithered by [-L, L] from its own seed."""
    augment = None if v == 0 else view_augmenter(opts.seed + v, AUGMENTATIONS[opts.augment])
    if not opts.view_dither:
        return augment
    return stability.dither_augmenter(opts.seed + stability.VIEW_DITHER_SEED + v, augment, levels=opts.view_dither)


def drop_pixels(splits: dict) -> dict:
    """The splits without their decoded images, once every model input is cached (about 1.2 GB at 320 px)."""
    return {name: replace(split, pixels=np.empty((0, *split.pixels.shape[1:]), np.uint8))
            for name, split in splits.items()}


def train(opts: TrainOptions) -> RunSummary:
    """Train and write the run folder; returns the summary written to metrics.json."""
    import keras

    started = time.perf_counter()
    out = prepare_out_dir(opts)
    keras.utils.set_random_seed(opts.seed)
    contract = InputContract(size=opts.size, normalization=get_backbone(opts.backbone).normalization)
    splits, data_report = load_splits(opts, contract)
    teacher, distillation = distill.teacher_targets(opts.teacher, splits["train"]) if opts.teacher else (None, None)
    model = build_model(opts.size, opts.weights, opts.dropout, opts.backbone, stem_lowpass=opts.stem_lowpass)
    if opts.weights == "none":
        rng = np.random.default_rng(opts.seed)
        estimate_batchnorm_statistics(model, splits["train"].pixels[rng.permutation(len(splits["train"].targets))])
    worker = model   # caches and trains; `model` (float32) is what is scored and saved
    if opts.mixed_precision:
        worker = precision.mixed_twin(lambda: build_model(opts.size, "none", opts.dropout, opts.backbone,
                                                          stem_lowpass=opts.stem_lowpass), model)
    cached, layer = cache_inputs(worker, splits, opts, scoring_model=model if worker is not model else None)
    splits = drop_pixels(splits)
    history = fit_stages(worker, layer, cached, splits["val"].targets, teacher, opts)
    if worker is not model:
        model.set_weights(worker.get_weights())
    probs = {k: predict_cached(model, layer, cached[k]) for k in ("val", "test")}
    thresholds = choose_thresholds(splits["val"].targets, probs["val"])
    return write_run_folder(out, model, opts, contract, splits, probs, thresholds, history, data_report,
                            time.perf_counter() - started, distillation)


def fit_stages(model, layer: str, cached: dict, val_y: np.ndarray, teacher, opts: TrainOptions) -> dict:
    """Stage 1 (head) and stage 2 (fine-tune the tail) with the loss the options ask for; returns the history."""
    weights = activations.class_weights(cached["train_y"])
    feats = {k: pooled(model, layer, cached[k], opts.batch_size, k) for k in ("train", "val")}
    if teacher is not None:
        return distill.fit_distilled(model, layer, cached, feats, val_y, weights, teacher, opts)
    if opts.stability:
        return fit_stable(model, layer, cached, feats, val_y, weights, opts)
    history = {"head": stages.fit_head(model, feats["train"], cached["train_y"], feats["val"], val_y, weights,
                                       opts.head_epochs, opts.head_lr, opts.batch_size * 2, opts.patience)}
    if layer != FEATURE_LAYER and opts.finetune_epochs:
        history["finetune"] = stages.fit_tail(trainable_tail(model, layer), cached["train"], cached["train_y"],
                                              cached["val"], val_y, weights, opts.finetune_epochs, opts.finetune_lr,
                                              opts.batch_size, opts.patience)
    return history


def fit_stable(model, layer: str, cached: dict, feats: dict, val_y: np.ndarray, weights: dict, opts: TrainOptions) -> dict:
    """Both stages on (view, dithered view) pairs with the consistency term (train/stability.py)."""
    import keras

    from ..edge_runtime.metrics import roc_auc

    y = cached["train_y"]
    sample_weight = np.where(y == 1, weights[1], weights[0])
    output = model.get_layer(OUTPUT_NAME)
    dim = feats["train"].shape[1]
    partner_feats = pooled(model, layer, cached["train_partner"], opts.batch_size, "dithered train")
    head = stability.pair_model(keras.layers.Identity(), output, (dim,), dim, opts.dropout)
    head_auc = lambda: roc_auc(val_y, output(feats["val"]).numpy().ravel())  # noqa: E731
    history = {"head": stability.fit_pairs(head, feats["train"], partner_feats, y, sample_weight, head_auc,
                                           opts.stability, opts.head_epochs, opts.head_lr, opts.batch_size * 2,
                                           opts.patience, "stage 1 (head, stability)")}
    if layer != FEATURE_LAYER and opts.finetune_epochs:
        tail = trainable_tail(model, layer)
        pair = stability.pair_model(stages.pooled_features(model, layer), output, cached["train"].shape[1:], dim, opts.dropout)
        tail_auc = lambda: roc_auc(val_y, tail.predict(cached["val"], batch_size=64, verbose=0).ravel())  # noqa: E731
        history["finetune"] = stability.fit_pairs(pair, cached["train"], cached["train_partner"], y, sample_weight,
                                                  tail_auc, opts.stability, opts.finetune_epochs, opts.finetune_lr,
                                                  opts.batch_size, opts.patience, "stage 2 (fine-tune, stability)")
    return history


def pooled(model, layer: str, cached: np.ndarray, batch_size: int, name: str) -> np.ndarray:
    """Pooled features (float32) of cached activations, a batch at a time into one array (Keras predict on the
    whole float16 cache made float32 copies of it: about 2 GB at 320 px with 2 views)."""
    if layer == FEATURE_LAYER:
        return np.asarray(cached, np.float32)
    return activations.cache_activations(stages.pooled_features(model, layer), cached, batch_size * 4,
                                         f"pooling {name} activations")


def predict_cached(model, layer: str, x: np.ndarray) -> np.ndarray:
    """P(fractured) for cached activations of `layer` (dropout off, batch-norm in inference mode)."""
    import keras

    inputs = keras.Input(x.shape[1:])
    if layer == FEATURE_LAYER:
        outputs = model.get_layer("fracture_prob")(model.get_layer("head_dropout")(inputs))
        rest = keras.Model(inputs, outputs)
    else:
        rest = keras.Model(model.get_layer(layer).output, model.output)
    return rest.predict(x, verbose=0, batch_size=64).ravel().astype(np.float64)
