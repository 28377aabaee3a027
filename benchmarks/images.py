"""The benchmark's real images: one split (or a stratified sample), preprocessed once with THE preprocessing."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..edge_runtime import dataset
from ..edge_runtime.preprocessing import InputContract, load_model_input
from ..edge_runtime.errors import FractureEdgeError
from ..edge_runtime.image_set import ImageSet
from ..edge_runtime.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitFacts:
    """How the bench's images were read: what the run record reports beside the ImageSet."""
    split: str
    n_listed: int                     # images listed in the split before sampling
    preprocess_ms: float              # mean decode + resize time per image, ms


def stratified_sample(samples: list, size: int) -> list:
    """Up to `size` samples keeping the class ratio (at least one of each class), evenly spaced, deterministic."""
    if size <= 0 or size >= len(samples):
        return list(samples)
    chosen = []
    by_class = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    for label, members in sorted(by_class.items()):
        take = max(1, round(size * len(members) / len(samples)))
        take = min(take, len(members))
        index = np.linspace(0, len(members) - 1, take).round().astype(int)
        chosen += [members[i] for i in sorted(set(index.tolist()))]
    return sorted(chosen, key=lambda s: str(s.path))


def load_images(data: str, split: str, contract: InputContract, sample: int = 0) -> tuple[ImageSet, SplitFacts]:
    """Read the split, optionally sample it, decode + resize every image; bad files are skipped and listed."""
    samples = dataset.read_dataset(data)
    if split != "all":
        samples = dataset.select_split(samples, split, str(data))
    listed = len(samples)
    samples = stratified_sample(samples, sample)
    # one uint8 array filled in place: never a list of images plus a stacked copy of it
    pixels = np.empty((len(samples), contract.size, contract.size, contract.channels), np.uint8)
    paths, labels, failures = [], [], []
    t0 = time.perf_counter()
    for s in progress(samples, desc=f"preprocessing {split}", total=len(samples)):
        try:
            pixels[len(paths)] = load_model_input(s.path, contract)
        except FractureEdgeError as exc:
            failures.append((str(s.path), str(exc)))
            continue
        paths.append(str(s.path))
        labels.append(s.target)
    if not paths:
        raise FractureEdgeError(f"{data}: none of the {len(samples)} images of split {split!r} could be read")
    elapsed_ms = (time.perf_counter() - t0) * 1000.0
    for path, reason in failures:
        log.warning("skipped %s", reason if path in reason else f"{path}: {reason}")
    images = ImageSet(pixels[:len(paths)], np.asarray(labels, dtype=np.int64), tuple(paths), tuple(failures),
                      f"{data} [{split}]")
    return images, SplitFacts(split, listed, elapsed_ms / max(len(samples), 1))


def save_pixels(pixels: np.ndarray, folder: Path) -> Path:
    """Write the preprocessed images where the worker subprocesses can memory-map them."""
    path = Path(folder) / "images.npy"
    np.save(path, pixels)
    return path
