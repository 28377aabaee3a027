"""The one set of preprocessed images with labels that export (calibration, verification) and bench share."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Preprocessed images (uint8 raw pixels, exactly as the runtime feeds them) with labels."""

    pixels: np.ndarray                      # (N, S, S, 3) uint8
    labels: np.ndarray                      # (N,) int64, 1 = fractured
    paths: tuple[str, ...]                  # the images that decoded, in order
    failures: tuple[tuple[str, str], ...]   # (path, reason) of files that could not be read
    source: str                             # where they came from, e.g. "DATA [train]"

    def __len__(self) -> int:
        return int(self.labels.size)
