"""Verify an artifact through the runtime users deploy (edge_runtime.Classifier) against the Keras model."""
from __future__ import annotations

import logging
import os

import numpy as np

from ..edge_runtime.classifier import Classifier
from ..edge_runtime.progress import progress
from .calibration import ImageSet
from .gates import GateResult, Gates, check_gates

log = logging.getLogger(__name__)

CHUNK = 32


def chunks(n: int, size: int = CHUNK) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def keras_probs(model, pixels: np.ndarray) -> np.ndarray:
    """Reference probabilities of the Keras model on raw uint8 pixels (fed as float32 0..255)."""
    parts = [np.asarray(model(pixels[s].astype(np.float32), training=False)).reshape(-1)
             for s in progress(chunks(len(pixels)), "keras reference", len(chunks(len(pixels))))]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def runtime_probs(path: str | os.PathLike, pixels: np.ndarray, num_threads: int | None = None,
                  bundle: dict | None = None) -> np.ndarray:
    """Probabilities from the deployed runtime; the artifact's embedded bundle is used unless one is given."""
    classifier = Classifier(path, num_threads=num_threads, bundle=bundle)
    log.debug("verifying %s with %s", path, classifier.runtime)
    parts = [classifier.predict_pixels(pixels[s])
             for s in progress(chunks(len(pixels)), f"verify {os.path.basename(path)}", len(chunks(len(pixels))))]
    return np.concatenate(parts) if parts else np.zeros(0)


def verify_artifact(format_name: str, path, images: ImageSet, ref_probs: np.ndarray, thresholds: dict,
                    gates: Gates, num_threads: int | None = None) -> GateResult:
    """Run the verification images through the artifact and apply the format's gate."""
    probs = runtime_probs(path, images.pixels, num_threads)
    return check_gates(format_name, ref_probs, probs, images.labels, thresholds, gates)
