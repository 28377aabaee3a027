"""Verify an artifact through the runtime users deploy (edge_runtime.Classifier) against the Keras model.

Images stay uint8 until a batch of CHUNK is fed; each batch is converted to float32 on its own.
The Keras reference runs as one traced graph (tf.function): a Keras 3 functional model called
eagerly keeps every layer's output alive until the call returns (about 370 MB per 320-px image for
DenseNet121: the process peaked at 13.8 GB for a batch of 32, measured), while the graph frees each
tensor after its last use (1.5 GB process peak for the same batch, the same probabilities).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..edge_runtime.classifier import Classifier
from ..edge_runtime.confidence import artifact_uncertainty
from ..edge_runtime.progress import progress
from .calibration import ImageSet
from .footprint import release_memory
from .gates import GateResult, VerdictRules, check_gates

log = logging.getLogger(__name__)

CHUNK = 32          # images per Keras reference batch (39 MB as float32 at 320 px)
RUNTIME_CHUNK = 8   # images per runtime batch: onnxruntime's arena grows ~60 MB per 320-px image in a batch


def chunks(n: int, size: int = CHUNK) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def compiled_forward(model) -> Callable[[np.ndarray], np.ndarray]:
    """float32 (N, S, S, 3) -> probabilities, through the model traced once as a graph (any N)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True)
    return lambda batch: np.asarray(forward(batch))


def keras_probs(model, pixels: np.ndarray, desc: str = "keras reference") -> np.ndarray:
    """Reference probabilities of the Keras model on raw uint8 pixels (fed as float32 0..255, CHUNK at a time)."""
    forward = compiled_forward(model)
    batches = chunks(len(pixels), CHUNK)
    parts = [forward(pixels[s].astype(np.float32)).reshape(-1) for s in progress(batches, desc, len(batches))]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


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
