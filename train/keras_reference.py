"""Probabilities of a Keras model on uint8 model inputs, as the reference every export is verified against.

Images stay uint8 until a batch of CHUNK is fed; each batch is converted to float32 on its own.
The model runs as one traced graph (tf.function): a Keras 3 functional model called eagerly keeps every
layer's output alive until the call returns (about 370 MB per 320-px image for DenseNet121: the process
peaked at 13.8 GB for a batch of 32, measured), while the graph frees each tensor after its last use
(1.5 GB process peak for the same batch, the same probabilities). TensorFlow is imported only when called.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..edge_runtime.batching import chunks
from ..edge_runtime.progress import progress

CHUNK = 32          # images per Keras reference batch (39 MB as float32 at 320 px)


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
