"""Fit the site check's in-distribution model (edge_runtime/site_model.py) at export, on training images only.

The Keras model's `features` output (the pooled vector every artifact also gives) is computed for up to N
seeded training images, decoded a chunk at a time. The model is the "ppca" design (docs/site-check.md): its
number of components is chosen (edge_runtime/site_components.py) by the mean log-likelihood of up to
CHOICE_IMAGES seeded val images of the same data, else of the held-out training images when the data has too
few val images. The fitted model is written into the staging folder and published with the artifacts
(`publish_site_model`, just before the final bundle.json), and its record, with the choice, goes into the
bundle every artifact embeds. Every format reads the same file: a compressed artifact's features differ only
by its own error, which the site check's report measures per format (check-site --format).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..edge_runtime.bundle import artifact_record
from ..edge_runtime.dataset import DatasetError, read_dataset
from ..edge_runtime.preprocessing import InputContract, load_batch
from ..edge_runtime.progress import progress
from ..edge_runtime.site_components import candidate_components, choose_components, held_out_features
from ..edge_runtime.site_model import SITE_FILE, fit_site_model
from .calibration import DECODE_CHUNK, random_training_samples
from .extra_outputs import FEATURES, with_extra_outputs

log = logging.getLogger(__name__)

FORWARD_BATCH = 32   # images per Keras call (a traced graph: about 1.5 GB peak at 320 px for DenseNet121)
SITE_IMAGES = 1000   # training images the site model is fitted on (0 = all): 750 fit it, 250 calibrate it
CHOICE_IMAGES = 500  # val images (seeded) whose mean log-likelihood chooses the number of components
MIN_CHOICE_IMAGES = 20   # fewer val images than this: the held-out training images choose it


def image_features(model, paths: list[str], contract: InputContract, what: str) -> np.ndarray:
    """(N, D) `features` output of the Keras model for the readable images of `paths` (unreadable ones skipped)."""
    import tensorflow as tf

    features = with_extra_outputs(model, (FEATURES,))
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    forward = tf.function(lambda x: features(x, training=False)[1], input_signature=[spec], reduce_retracing=True)
    model_features = int(np.prod(features.outputs[1].shape[1:]))
    parts, skipped = [np.zeros((0, model_features), np.float32)], 0
    steps = range(0, len(paths), DECODE_CHUNK)
    for start in progress(steps, f"site model features ({len(paths)} {what})", len(steps)):
        pixels, kept, failures = load_batch(paths[start:start + DECODE_CHUNK], contract)
        skipped += len(failures)
        parts += [np.asarray(forward(pixels[i:i + FORWARD_BATCH].astype(np.float32))).reshape(-1, model_features)
                  for i in range(0, len(kept), FORWARD_BATCH)]
    if skipped:
        log.warning("site model: %d unreadable %s skipped", skipped, what)
    return np.concatenate(parts).astype(np.float32)


def training_features(model, data: str | os.PathLike, contract: InputContract, n: int,
                      seed: int) -> tuple[np.ndarray, str]:
    """(features (N, D) of up to n random training images, their source), skipping unreadable files."""
    split, chosen = random_training_samples(data, n if n > 0 else 10 ** 9, (), seed, "for the site model")
    features = image_features(model, [str(s.path) for s in chosen], contract, "training images")
    if not len(features):
        raise DatasetError(f"{data}: none of the training images for the site model could be read")
    return features, f"{data} [{split}]"


def val_features(model, data: str | os.PathLike, contract: InputContract, n: int, seed: int) -> np.ndarray:
    """(N, D) features of up to n seeded val images of `data` ((0, D) when it has none)."""
    pool = [s for s in read_dataset(data) if s.split == "val"]
    chosen = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:n]]
    return image_features(model, [str(s.path) for s in chosen], contract, "val images")


def fit_ppca(model, data: str | os.PathLike, contract: InputContract, train: np.ndarray, seed: int) -> tuple:
    """(the ppca site model, its component_choice record); (None, None) when no candidate K fits."""
    if not candidate_components(*train.shape):
        log.warning("site model: no candidate number of components fits %d images of %d features: the subspace "
                    "distance alone", *train.shape)
        return None, None
    choosing, source = val_features(model, data, contract, CHOICE_IMAGES, seed), f"{data} [val]"
    if len(choosing) < MIN_CHOICE_IMAGES:
        log.warning("site model: %d val images (< %d): the held-out training images choose the components",
                    len(choosing), MIN_CHOICE_IMAGES)
        choosing, source = held_out_features(train, seed), "held-out training images"
    choice = choose_components(train, choosing, seed)
    log.info("site model: K=%d chosen on %d %s (mean log-likelihood %s)", choice.components, len(choosing), source,
             ", ".join(f"{k}: {v:.1f}" for k, v in choice.log_likelihood.items()))
    return choice.model, {**choice.to_dict(), "on": source, "images": int(len(choosing))}


def fit_export_site_model(model, data: str | os.PathLike, contract: InputContract, folder: Path, n: int = SITE_IMAGES,
                          seed: int = 0) -> dict:
    """Fit, write FOLDER/site_model.f32, and return its bundle record (describe() + file, hash, source, choice)."""
    features, source = training_features(model, data, contract, n, seed)
    site, choice = fit_ppca(model, data, contract, features, seed)
    if site is None:
        site = fit_site_model(features, seed=seed)
    path = site.save(folder / SITE_FILE)
    record = {**site.describe(), "file": SITE_FILE, **artifact_record(path), "source": source,
              "images": int(features.shape[0]), "seed": seed, **({"component_choice": choice} if choice else {})}
    log.info("site model: %s on %d training images (%d components, %d held out), %d bytes", record["method"],
             record["images"], record["components"], record["held_out"], record["bytes"])
    return record


def publish_site_model(staged: Path, run_dir: Path) -> None:
    """Move the staged site model file into the run folder (before bundle.json records its hash)."""
    if staged.is_file():
        os.replace(staged, run_dir / SITE_FILE)
