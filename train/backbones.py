"""The backbone table: one row per ImageNet backbone `fracture-edge train --backbone NAME` can build.

A row says everything the stages after training need to know about a backbone, so nothing else names its
layers: the Keras constructor and its arguments, the ImageNet preprocessing that goes inside the graph (a
per-channel Rescaling after the raw-pixel input, so the bundle's input contract stays raw 0..255 pixels), the
default input size, the cached activation that feeds each trainable tail, and the last feature map (what the
global average pool reads: the heatmap's grid). Lookups are by name, never by position.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..edge_runtime.bundle_schema import NORMALIZATIONS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATION_LAYER = "imagenet_normalization"   # the in-graph preprocessing layer (export/stem_fold.py reads it)


@dataclass(frozen=True)
class Backbone:
    name: str                           # the --backbone value and bundle.json "backbone"
    model: str                          # bundle.json "model" and the model card's name
    constructor: str                    # keras.applications attribute
    kwargs: tuple[tuple[str, object], ...]   # extra constructor arguments (alpha, ...)
    scale: tuple[float, float, float]   # in-graph preprocessing: x * scale + offset, per channel
    offset: tuple[float, float, float]
    normalization: str                  # bundle.json input.normalization: what the graph does to the pixels
    default_size: int                   # input side when --size is not given
    tails: dict[str, str] = field(default_factory=dict)   # --finetune-from value -> cached layer feeding that tail
    default_tail: str = ""
    feature_map: str = ""               # last feature map (read by the global average pool; heatmap grid)

    def build(self, weights, input_tensor=None, input_shape=None):
        """The Keras application without its top (weights None, 'imagenet' or a file path)."""
        import keras

        make = getattr(keras.applications, self.constructor)
        return make(include_top=False, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
                    **dict(self.kwargs))


DENSENET_NORMALIZATION, MOBILENET_NORMALIZATION = NORMALIZATIONS

BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("densenet121", "DenseNet121", "DenseNet121", (),
             scale=tuple(1.0 / (255.0 * s) for s in IMAGENET_STD),
             offset=tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
             normalization=DENSENET_NORMALIZATION, default_size=320,
             tails={"conv5": "pool4_pool", "conv4": "pool3_pool", "conv3": "pool2_pool", "conv2": "pool1"},
             default_tail="conv5", feature_map="relu"),
    Backbone("mobilenetv2-0.35", "MobileNetV2-0.35", "MobileNetV2", (("alpha", 0.35),),
             scale=(1.0 / 127.5,) * 3, offset=(-1.0,) * 3,
             normalization=MOBILENET_NORMALIZATION, default_size=224,
             # each tail starts at the input of an inverted-residual block: 16 is the last, 13 the last stride-2 one
             tails={"block16": "block_15_add", "block14": "block_13_project_BN", "block13": "block_12_add",
                    "block11": "block_10_project_BN"},
             default_tail="block13", feature_map="out_relu"),
)}
DEFAULT_BACKBONE = "densenet121"


def get_backbone(name: str) -> Backbone:
    """The row named `name`, or ValueError listing the valid names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"--backbone must be one of {', '.join(BACKBONES)}, got {name!r}") from None


def backbone_of(bundle: dict) -> Backbone:
    """The backbone a run's bundle.json records (bundles written before issue 24 have none: DenseNet121)."""
    return get_backbone(bundle.get("backbone") or DEFAULT_BACKBONE)
