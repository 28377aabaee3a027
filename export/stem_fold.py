"""Fold the in-graph ImageNet normalization into conv1, so the int8 model's first convolution reads raw pixels.

In the int8 model the normalization is a MUL and an ADD whose int8 outputs cannot hold the 256
pixel levels of all three channels on one grid: every pixel is rounded by up to half a level
before conv1 (measured on FracAtlas in the int8 simulation: that rounding alone moved the logit by
RMS 0.27). Folding a per-channel affine into conv1 is exact everywhere but at the border, where
conv1 sees zero padding in normalized space, i.e. a per-channel mean colour in pixel space. So
conv1 gets a fourth input channel that is 255 on the image and 0 in the padding (MAXIMUM of a
pixel channel with 255: exact in int8), carrying the normalization's offset:

    conv1(pad0(a * x + b)) = conv1[w * a](pad0(x)) + conv1[sum_c w_c * b_c / 255](pad0(255))

which is float-exact for any RGB input, and int8-exact at the input (uint8 pixels and 255 on a
scale-1 grid). conv1 costs one more input channel (about 0.7 % of the model's multiply-adds).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

NORMALIZATION = "imagenet_normalization"
ONES_LEVEL = 255.0      # the extra channel's value: the top pixel level keeps every input on one int8 grid


def constant_channel_layer():
    """A Keras layer returning max(x[..., :1], 255): 255 wherever the input is a 0..255 pixel."""
    import keras

    class ConstantChannel(keras.layers.Layer):
        """One channel of 255s the size of the input (0 once zero-padded): carries conv1's offset."""

        def call(self, x):
            return keras.ops.maximum(x[..., :1], ONES_LEVEL)

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], 1)

    return ConstantChannel(name="pixel_plane")


def stem_layers(model) -> tuple:
    """(normalization, its zero padding, conv1) of a fracture-edge DenseNet, or ValueError."""
    from .int8_sim import inbound_names

    try:
        norm = model.get_layer(NORMALIZATION)
    except ValueError:
        raise ValueError(f"no {NORMALIZATION!r} layer to fold into conv1") from None
    readers = {}
    for layer in model.layers:
        if type(layer).__name__ != "InputLayer":
            for name in inbound_names(layer):
                readers.setdefault(name, []).append(layer)
    pad = (readers.get(NORMALIZATION) or [None])[0]
    conv = (readers.get(getattr(pad, "name", None)) or [None])[0]
    if len(readers.get(NORMALIZATION, [])) != 1 or type(pad).__name__ != "ZeroPadding2D" \
            or type(conv).__name__ != "Conv2D" or len(readers[pad.name]) != 1:
        raise ValueError(f"{NORMALIZATION} is not followed by zero padding and one convolution")
    return norm, pad, conv


def folded_kernel(norm, conv) -> np.ndarray:
    """conv1's kernel on [pixels, 255-channel]: weights * scale, and the offset's weights / 255."""
    kernel = np.asarray(conv.kernel, np.float64)               # (h, w, 3, out)
    scale = np.asarray(norm.scale, np.float64).reshape(-1)
    offset = np.asarray(norm.offset, np.float64).reshape(-1)
    pixels = kernel * scale[None, None, :, None]
    plane = (kernel * offset[None, None, :, None]).sum(axis=2, keepdims=True) / ONES_LEVEL
    return np.concatenate([pixels, plane], axis=2).astype(np.float32)


def fold_input_normalization(model):
    """A float-equivalent copy of `model` with the normalization folded into conv1 (see module doc)."""
    import keras

    from .int8_sim import inbound_names

    norm, pad, conv = stem_layers(model)
    config = conv.get_config()
    new_conv = keras.layers.Conv2D.from_config(config)
    inputs = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name, dtype="float32")
    stacked = keras.layers.Concatenate(name="pixels_and_plane")([inputs, constant_channel_layer()(inputs)])
    values = {conv.name: new_conv(keras.layers.ZeroPadding2D(pad.padding, name=pad.name)(stacked))}
    new_conv.set_weights([folded_kernel(norm, conv)] + ([np.asarray(conv.bias)] if conv.use_bias else []))
    seen = False
    for layer in model.layers:
        if layer is conv:
            seen = True
            continue
        if not seen:
            continue
        args = [values[name] for name in inbound_names(layer)]
        values[layer.name] = layer(args if len(args) > 1 else args[0])
    folded = keras.Model(inputs, values[model.layers[-1].name], name=model.name)
    log.info("folded the input normalization into %s (4 input channels)", conv.name)
    return folded
