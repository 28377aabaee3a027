"""DenseNet121 fracture classifier: raw-pixel input, ImageNet normalisation inside the graph."""
from __future__ import annotations

import logging
from pathlib import Path

from ..edge_runtime.errors import FractureEdgeError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NAME = "pixels"
OUTPUT_NAME = "fracture_prob"
FEATURE_LAYER = "avg_pool"        # 1024-d pooled features: stage 1 trains the head on these
# Cached input of each trainable tail: "conv5" fine-tunes the last dense block, "conv4" the last two, ...
FINETUNE_FROM = {"conv5": "pool4_pool", "conv4": "pool3_pool", "conv3": "pool2_pool", "conv2": "pool1"}


def build_model(size: int, weights: str = "none", dropout: float = 0.3):
    """DenseNet121 + head taking (size, size, 3) float pixels in 0..255, returning P(fractured).

    weights: 'none' (random), 'imagenet' (Keras downloads them; needs internet) or a path to a
    no-top DenseNet121 weights file (e.g. ../shared/weights/densenet121_imagenet_notop.weights.h5).
    """
    import keras

    inputs = keras.Input((size, size, 3), name=INPUT_NAME, dtype="float32")
    x = keras.layers.Rescaling(
        scale=[1.0 / (255.0 * s) for s in IMAGENET_STD],
        offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)],
        name="imagenet_normalization",
    )(inputs)
    backbone = keras.applications.DenseNet121(include_top=False, weights=None, input_tensor=x)
    features = keras.layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(backbone.output)
    features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_NAME)(features)
    model = keras.Model(inputs, outputs, name="fracture_densenet121")
    _load_backbone_weights(model, size, weights)
    return model


def _load_backbone_weights(model, size: int, weights: str) -> None:
    """Load ImageNet weights into a standalone backbone, then copy them layer by layer by name."""
    import keras

    if weights in (None, "none"):
        log.info("backbone initialised randomly (--weights none)")
        return
    if weights != "imagenet" and not Path(weights).is_file():
        raise FractureEdgeError(f"{weights}: weights file not found (use --weights imagenet|none|PATH)")
    try:
        donor = keras.applications.DenseNet121(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:  # download failure, wrong file: one clear line
        raise FractureEdgeError(f"cannot load DenseNet121 weights from {weights!r}: {exc}") from None
    copied = 0
    for layer in donor.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    log.info("loaded ImageNet weights into %d backbone layers from %s", copied, weights)


def feature_extractor(model, layer_name: str):
    """Sub-model from the raw-pixel input to `layer_name`'s output (shares weights with `model`)."""
    import keras

    return keras.Model(model.input, model.get_layer(layer_name).output)


def trainable_tail(model, from_layer: str):
    """Sub-model from `from_layer`'s output to the prediction (shares layers with `model`).

    Batch-norm layers stay frozen (inference statistics): small CPU batches would wreck them, and
    moving statistics that lag the weights make validation scores meaningless.
    """
    import keras

    tail = keras.Model(model.get_layer(from_layer).output, model.output)
    for layer in tail.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return tail


def estimate_batchnorm_statistics(model, pixels, batch_size: int = 64) -> None:
    """Set every batch-norm layer's moving statistics from one pass over `pixels` (randomly initialised nets).

    A random backbone has placeholder statistics (mean 0, variance 1), so its features are badly
    scaled and frozen batch-norm never fixes them. One training-mode pass with momentum 0 replaces
    them with the statistics of the real inputs, layer by layer.
    """
    import keras
    import numpy as np

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer, layer.momentum) for layer in norms]
    sample = np.asarray(pixels[:batch_size], dtype="float32")
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(sample, training=True)
    finally:
        for layer, momentum in saved:
            layer.momentum = momentum
    log.info("re-estimated batch-norm statistics of %d layers on %d images", len(norms), len(sample))
