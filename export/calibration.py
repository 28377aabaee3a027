"""Real images for int8 calibration (stratified, seeded, from the training split) and for verification."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..edge_runtime.dataset import LABELS, DatasetError, Sample, read_dataset
from ..edge_runtime.image_set import ImageSet
from ..edge_runtime.preprocessing import InputContract, load_batch
from ..edge_runtime.progress import progress

log = logging.getLogger(__name__)

CALIBRATION_SPLITS = ("train", "all")   # never calibrate on val/test images
DECODE_CHUNK = 64                       # images decoded per step of the progress bar


def stratified_sample(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    """Up to n samples, half from each class when possible (the rest from the larger class), seeded."""
    rng = np.random.default_rng(seed)
    by_class = {label: [s for s in samples if s.label == label] for label in LABELS}
    for label in LABELS:
        order = rng.permutation(len(by_class[label]))
        by_class[label] = [by_class[label][i] for i in order]
    small, large = sorted(LABELS, key=lambda lab: len(by_class[lab]))
    take_small = min(len(by_class[small]), n // 2)
    chosen = by_class[small][:take_small] + by_class[large][:n - take_small]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def load_images(samples: list[Sample], contract: InputContract, source: str) -> ImageSet:
    """Decode and preprocess samples with THE preprocessing, DECODE_CHUNK at a time, straight into one uint8
    array (never a list of images plus a stacked copy); bad files are reported and skipped."""
    pixels = np.empty((len(samples), contract.size, contract.size, contract.channels), np.uint8)
    kept: list[int] = []
    failures: list[tuple[str, str]] = []
    batches = [slice(i, min(i + DECODE_CHUNK, len(samples))) for i in range(0, len(samples), DECODE_CHUNK)]
    for batch in progress(batches, f"decoding {len(samples)} images", len(batches)):
        decoded, ok, bad = load_batch([s.path for s in samples[batch]], contract)
        pixels[len(kept):len(kept) + len(ok)] = decoded
        kept += [batch.start + i for i in ok]
        failures += bad
    for path, reason in failures:
        log.warning("skipped %s: %s", path, reason)
    labels = np.array([samples[i].target for i in kept], dtype=np.int64)
    paths = tuple(str(samples[i].path) for i in kept)
    return ImageSet(pixels[:len(kept)] if failures else pixels, labels, paths, tuple(failures), source)


def training_pool(data: str | os.PathLike) -> tuple[str, list[Sample]]:
    """The split int8 work may draw from (train, else an unsplit dataset) and its samples."""
    samples = read_dataset(data)
    for split in CALIBRATION_SPLITS:
        pool = [s for s in samples if s.split == split]
        if pool:
            return split, pool
    raise DatasetError(f"{data}: no training images to calibrate on (splits present: "
                       f"{', '.join(sorted({s.split for s in samples}))})")


def calibration_set(data: str | os.PathLike, contract: InputContract, n: int, seed: int = 0) -> ImageSet:
    """n stratified training images for post-training quantization."""
    if n < 1:
        raise ValueError(f"--calib-images must be at least 1, got {n}")
    split, pool = training_pool(data)
    chosen = stratified_sample(pool, n, seed)
    log.info("calibration: %d %s images from %s (seed %d)", len(chosen), split, data, seed)
    images = load_images(chosen, contract, f"{data} [{split}]")
    if len(images) == 0:
        raise DatasetError(f"{data}: none of the calibration images could be read")
    return images


def selection_set(data: str | os.PathLike, contract: InputContract, n: int, exclude: tuple[str, ...],
                  seed: int = 1) -> ImageSet:
    """n random training images not in `exclude` (the calibration images), to choose mixed-precision layers.

    Not stratified: the classes keep the dataset's ratio, as in val/test, so decisions near the
    thresholds are as frequent as where the gate measures them.
    """
    split, chosen = selection_samples(data, n, exclude, seed)
    log.info("selection: %d held-out %s images from %s (seed %d)", len(chosen), split, data, seed)
    return load_images(chosen, contract, f"{data} [{split}, not calibration]")


def selection_samples(data: str | os.PathLike, n: int, exclude: tuple[str, ...], seed: int) -> tuple[str, list]:
    """The split and the samples selection_set loads (chosen without decoding anything)."""
    return random_training_samples(data, n, exclude, seed, "beside the calibration images (use fewer "
                                   "--calib-images, or --no-int8-fallback)")


def random_training_samples(data: str | os.PathLike, n: int, exclude: tuple[str, ...], seed: int,
                            what: str) -> tuple[str, list]:
    """Up to n random training samples not in `exclude`, seeded; `what` completes the error when none is left."""
    split, pool = training_pool(data)
    excluded = set(exclude)
    pool = [s for s in pool if str(s.path) not in excluded]
    if not pool:
        raise DatasetError(f"{data}: no training images left {what}")
    return split, [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))[:n]]


def tuning_set(data: str | os.PathLike, contract: InputContract, n: int, exclude: tuple[str, ...],
               seed: int = 2) -> ImageSet:
    """n random training images not in `exclude` (the selection images), for quantization-aware tuning."""
    split, chosen = random_training_samples(data, n, exclude, seed, "for int8-aware tuning")
    log.info("int8-aware tuning: %d %s images from %s (seed %d)", len(chosen), split, data, seed)
    return load_images(chosen, contract, f"{data} [{split}, not selection]")


def verification_set(data: str | os.PathLike, contract: InputContract, splits: tuple[str, ...]) -> ImageSet:
    """Every image of the given splits (e.g. val, test) for the fidelity gate."""
    samples = [s for s in read_dataset(data) if s.split in splits]
    if not samples:
        raise DatasetError(f"{data}: no images in split(s) {', '.join(splits)}")
    log.info("verification: %d images from %s [%s]", len(samples), data, ",".join(splits))
    images = load_images(samples, contract, f"{data} [{','.join(splits)}]")
    if len(images) == 0:
        raise DatasetError(f"{data}: none of the verification images could be read")
    return images


def resolve_data_dir(flag: str | None, bundle: dict, run_dir: Path, what: str) -> Path:
    """--calib-data/--verify-data, else the bundle's data.source (relative to cwd, then the repo root)."""
    if flag:
        path = Path(flag)
        if not path.exists():
            raise DatasetError(f"{path}: {what} data folder not found")
        return path
    source = (bundle.get("data") or {}).get("source")
    if not source:
        raise DatasetError(f"{run_dir}: bundle.json records no training data source; pass --{what}-data DIR")
    candidates = [Path(source)] if Path(source).is_absolute() else \
        [Path(source), run_dir.resolve().parent.parent / source, run_dir / source]
    for path in candidates:
        if path.exists():
            return path
    raise DatasetError(f"{source}: {what} data recorded in bundle.json not found "
                       f"(tried {', '.join(map(str, candidates))}); pass --{what}-data DIR")
