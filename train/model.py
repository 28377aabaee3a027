"""The fracture classifier: raw-pixel input, the backbone's ImageNet preprocessing inside the graph, GAP + one unit.

Which backbone, and everything about it, comes from the table in train/backbones.py (DenseNet121 by default).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..edge_runtime.errors import FractureEdgeError
from .backbones import DEFAULT_BACKBONE, NORMALIZATION_LAYER, get_backbone

log = logging.getLogger(__name__)

INPUT_NAME = "pixels"
OUTPUT_NAME = "fracture_prob"
STEM_LOWPASS_LAYER = "stem_lowpass"
FEATURE_LAYER = "avg_pool"        # pooled features (1024-d DenseNet121, 1280-d MobileNetV2): stage 1 trains the head on these
# Cached input of each trainable tail of the default backbone (train/backbones.py has every backbone's)
FINETUNE_FROM = get_backbone(DEFAULT_BACKBONE).tails


def build_model(size: int, weights: str = "none", dropout: float = 0.3, backbone: str = DEFAULT_BACKBONE,
                stem_lowpass: bool = False):
    """Backbone + head taking (size, size, 3) float pixels in 0..255, returning P(fractured).

    weights: 'none' (random), 'imagenet' (Keras downloads them; needs internet) or a path to the backbone's
    no-top weights file (e.g. ../shared/weights/densenet121_imagenet_notop.weights.h5).
    stem_lowpass: a fixed 3x3 binomial low-pass (stem_lowpass_layer) between the normalization and the backbone.
    """
    import keras

    row = get_backbone(backbone)
    inputs = keras.Input((size, size, 3), name=INPUT_NAME, dtype="float32")
    x = keras.layers.Rescaling(scale=list(row.scale), offset=list(row.offset), name=NORMALIZATION_LAYER)(inputs)
    if stem_lowpass:
        x = stem_lowpass_layer()(x)
    base = row.build(weights=None, input_tensor=x)
    features = keras.layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(base.output)
    features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    # float32 under any policy: with --mixed-precision the sigmoid and the loss stay exact (train/precision.py)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_NAME, dtype="float32")(features)
    model = keras.Model(inputs, outputs, name=f"fracture_{row.constructor.lower()}")
    _load_backbone_weights(model, size, weights, row)
    return model


def binomial_kernel() -> np.ndarray:
    """(3, 3, 3, 1) depthwise kernel: [1, 2, 1] / 4 along rows times the same along columns, per channel."""
    taps = np.array([1.0, 2.0, 1.0], np.float32) / 4
    return np.repeat(np.outer(taps, taps)[:, :, None, None], 3, axis=2)


def stem_lowpass_layer():
    """A frozen 3x3 binomial low-pass per channel (issue 21, docs/robustness.md): a built-in DepthwiseConv2D, so
    every converter and the runtime need nothing new. It sits after the normalization, so its zero padding is the
    mean colour (and export's normalization fold, which needs the padding right after it, is skipped)."""
    import keras

    layer = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=STEM_LOWPASS_LAYER, trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([binomial_kernel()])
    return layer


def _load_backbone_weights(model, size: int, weights: str, row) -> None:
    """Load ImageNet weights into a standalone backbone, then copy them layer by layer by name."""
    if weights in (None, "none"):
        log.info("backbone initialised randomly (--weights none)")
        return
    if weights != "imagenet" and not Path(weights).is_file():
        raise FractureEdgeError(f"{weights}: weights file not found (use --weights imagenet|none|PATH)")
    try:
        donor = row.build(weights=weights, input_shape=(size, size, 3))
    except Exception as exc:  # download failure, wrong file: one clear line
        raise FractureEdgeError(f"cannot load {row.model} weights from {weights!r}: {exc}") from None
    copied = 0
    for layer in donor.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    log.info("loaded ImageNet weights into %d %s layers from %s", copied, row.model, weights)


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
