"""Training options: one frozen dataclass, defaults < CLI flags."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .augment import AUGMENTATIONS, DEFAULT_AUGMENTATION
from .model import FINETUNE_FROM


@dataclass(frozen=True)
class TrainOptions:
    data: str                         # dataset folder (split/class/image) or split CSV
    out: str                          # run folder to create
    weights: str = "imagenet"         # imagenet | none | PATH to no-top DenseNet121 weights
    size: int = 320                   # square input side in pixels
    views: int = 2                    # training views cached per image: the original + (views-1) augmented
    augment: str = DEFAULT_AUGMENTATION   # basic | robust (train/augment.py AUGMENTATIONS)
    head_epochs: int = 40
    head_lr: float = 1e-3
    finetune_from: str = "conv5"      # conv5 | conv4 | none: which dense block(s) are fine-tuned
    finetune_epochs: int = 6
    finetune_lr: float = 1e-4
    batch_size: int = 32
    patience: int = 2                 # early stopping on validation AUC
    dropout: float = 0.3
    stability: float = 0.0            # weight of the logit-consistency term against a dithered copy (0 = off)
    seed: int = 0
    max_images: int = 0               # 0 = all; >0 caps each split (smoke runs)
    allow_leakage: bool = False
    overwrite: bool = False
    synthetic: bool = False           # data is the built-in synthetic set (labelled so everywhere)

    def __post_init__(self) -> None:
        valid = tuple(FINETUNE_FROM) + ("none",)
        if self.finetune_from not in valid:
            raise ValueError(f"--finetune-from must be one of {', '.join(valid)}, got {self.finetune_from!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.stability < 0:
            raise ValueError(f"--stability must be >= 0, got {self.stability}")
        if self.views < 1:
            raise ValueError(f"--views must be >= 1, got {self.views}")
        for name in ("head_epochs", "finetune_epochs", "batch_size", "patience"):
            if getattr(self, name) < 0 or (name == "batch_size" and self.batch_size == 0):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)
