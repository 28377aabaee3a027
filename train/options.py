"""Training options: one frozen dataclass, defaults < CLI flags."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .augment import AUGMENTATIONS, DEFAULT_AUGMENTATION
from .backbones import BACKBONES, DEFAULT_BACKBONE, get_backbone

AUTO = "auto"   # --finetune-from / --size 0: the backbone's own default (train/backbones.py)


@dataclass(frozen=True)
class TrainOptions:
    data: str                         # dataset folder (split/class/image) or split CSV
    out: str                          # run folder to create
    backbone: str = DEFAULT_BACKBONE  # train/backbones.py BACKBONES: densenet121 | mobilenetv2-0.35
    weights: str = "imagenet"         # imagenet | none | PATH to the backbone's no-top weights
    size: int = 0                     # square input side in pixels (0: the backbone's default, 320 for DenseNet121)
    views: int = 2                    # training views cached per image: the original + (views-1) augmented
    augment: str = DEFAULT_AUGMENTATION   # basic | robust (train/augment.py AUGMENTATIONS)
    head_epochs: int = 40
    head_lr: float = 1e-3
    finetune_from: str = AUTO         # the backbone's tail (conv5 | conv4 ... for DenseNet121) | none | auto
    finetune_epochs: int = 6
    finetune_lr: float = 1e-4
    batch_size: int = 32
    patience: int = 2                 # early stopping on validation AUC
    dropout: float = 0.3
    stability: float = 0.0            # weight of the logit-consistency term against a dithered copy (0 = off)
    stem_lowpass: bool = False        # a fixed 3x3 binomial low-pass in the graph before the first convolution
    view_dither: int = 0              # every training view + a uniform integer in [-L, L] per pixel (0 = off)
    mixed_precision: bool = False     # train in bfloat16 compute (train/precision.py); the saved model is float32
    teacher: str = ""                 # run folder of a trained model whose logits on the training images are distilled
    distill_alpha: float = 0.5        # loss = alpha * BCE(labels) + (1 - alpha) * T^2 * BCE(teacher/T, student/T)
    distill_temperature: float = 2.0
    seed: int = 0
    max_images: int = 0               # 0 = all; >0 caps each split (smoke runs)
    allow_leakage: bool = False
    overwrite: bool = False
    synthetic: bool = False           # data is the built-in synthetic set (labelled so everywhere)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"--backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        row = get_backbone(self.backbone)
        # resolved here, once, so that bundle.json records what was trained (a frozen dataclass: set through object)
        if self.finetune_from == AUTO:
            object.__setattr__(self, "finetune_from", row.default_tail)
        if not self.size:
            object.__setattr__(self, "size", row.default_size)
        valid = tuple(row.tails) + ("none",)
        if self.finetune_from not in valid:
            raise ValueError(f"--finetune-from must be one of {', '.join(valid)} (--backbone {self.backbone}), "
                             f"got {self.finetune_from!r}")
        self._check_distillation()
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.stability < 0:
            raise ValueError(f"--stability must be >= 0, got {self.stability}")
        if not 0 <= self.view_dither <= 16:
            raise ValueError(f"--view-dither must be 0..16 grey levels, got {self.view_dither}")
        if self.views < 1:
            raise ValueError(f"--views must be >= 1, got {self.views}")
        for name in ("head_epochs", "finetune_epochs", "batch_size", "patience"):
            if getattr(self, name) < 0 or (name == "batch_size" and self.batch_size == 0):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

    def _check_distillation(self) -> None:
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError(f"--distill-alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ValueError(f"--distill-temperature must be > 0, got {self.distill_temperature}")
        if self.teacher and self.stability:
            raise ValueError("--teacher and --stability cannot be combined (one training loss at a time)")

    def to_dict(self) -> dict:
        return asdict(self)
