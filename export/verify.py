"""Verify an artifact through the runtime users deploy (edge_runtime.Classifier) against the Keras model.

The Keras reference probabilities come from train/keras_reference.py; here the artifact's own are computed,
uint8 images fed RUNTIME_CHUNK at a time (edge_runtime/batching.py), and judged by the gates.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..edge_runtime.batching import RUNTIME_CHUNK, chunks
from ..edge_runtime.classifier import Classifier
from ..edge_runtime.confidence import artifact_uncertainty
from ..edge_runtime.progress import progress
from ..edge_runtime.image_set import ImageSet
from .footprint import release_memory
from .gates import GateResult, VerdictRules, check_gates

log = logging.getLogger(__name__)


def runtime_probs(path: str | os.PathLike, pixels: np.ndarray, num_threads: int | None = None,
                  bundle: dict | None = None) -> np.ndarray:
    """Probabilities from the deployed runtime; the artifact's embedded bundle is used unless one is given.

    The interpreter or session is released before returning (not left to the garbage collector while
    the next format loads its own).
    """
    classifier = Classifier(path, num_threads=num_threads, bundle=bundle)
    log.debug("verifying %s with %s", path, classifier.runtime)
    batches = chunks(len(pixels), RUNTIME_CHUNK)
    try:
        parts = [classifier.predict_pixels(pixels[s])
                 for s in progress(batches, f"verify {os.path.basename(path)}", len(batches))]
    finally:
        del classifier
        release_memory()
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass(frozen=True)
class Verification:
    """The fidelity verdict on one artifact, and the uncertainty of its metrics (reported beside it)."""
    gate: GateResult
    uncertainty: dict | None   # confidence.artifact_uncertainty: 95 % CIs and the paired AUC test vs Keras


def verify_artifact(format_name: str, path, images: ImageSet, ref_probs: np.ndarray, thresholds: dict,
                    rules: VerdictRules, num_threads: int | None = None,
                    dither_probs: np.ndarray | None = None) -> Verification:
    """Run the verification images through the artifact, give the fidelity verdict, and measure the 95 % CIs
    of its metrics and of its AUC difference from Keras on the same images."""
    probs = runtime_probs(path, images.pixels, num_threads)
    gate = check_gates(format_name, ref_probs, probs, images.labels, thresholds, rules, dither_probs)
    if not np.all(np.isfinite(probs)):   # a broken model: the gate says why, there is nothing to bootstrap
        return Verification(gate, None)
    return Verification(gate, artifact_uncertainty(images.labels, probs, thresholds, reference_probs=ref_probs))
