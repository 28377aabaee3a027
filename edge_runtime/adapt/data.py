"""A site's labelled images for `fracture-edge adapt`: read, decoded once, run through the edge model.

Each image is decoded once into the model input (the runtime's preprocessing) and four image statistics
(mean and SD of the decoded grey levels, width, height: what a trivial baseline may use), then the
model's probability and pooled features are read in batches. Bad images are skipped and reported.
numpy + pillow + the edge runtime only.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundle import file_sha256
from ..classifier import batches, failure_for
from ..dataset import LABELS, DatasetError, Sample, read_dataset
from ..decoding import decode_gray
from ..errors import FractureEdgeError
from ..preprocessing import to_model_input
from ..progress import progress

log = logging.getLogger(__name__)

MIN_PER_CLASS = 10      # refuse below: cross-validation of a 1,024-feature head is meaningless
WARN_PER_CLASS = 25     # warn below: the confidence intervals are very wide
STAT_NAMES = ("mean", "sd", "width", "height")


class AdaptDataError(FractureEdgeError):
    """The local set cannot be used for adaptation (too few images of a class, ...)."""


@dataclass(frozen=True)
class LocalSet:
    """The usable images of a site's set, in listing order, with what adapt needs of each."""

    paths: tuple[str, ...]
    targets: np.ndarray          # (n,) 1 = positive label
    base_probabilities: np.ndarray   # (n,) the artifact's own P(positive)
    features: np.ndarray         # (n, d) pooled features from the artifact
    image_stats: np.ndarray      # (n, 4) STAT_NAMES
    failures: tuple[tuple[str, str], ...]    # (path, reason) of the images skipped
    file_sha256: tuple[str, ...]  # of each usable image file

    def counts(self) -> dict[str, int]:
        return {label: int((self.targets == i).sum()) for i, label in enumerate(LABELS)}

    @property
    def listing_sha256(self) -> str:
        """sha256 of the sorted 'label<TAB>sha256 of the file' lines: the same images and labels, the same hash."""
        lines = sorted(f"{LABELS[t]}\t{h}\n" for t, h in zip(self.targets, self.file_sha256))
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def subset(self, indices) -> "LocalSet":
        """The images at `indices` (no failures: they were reported when the whole set was read)."""
        idx = np.asarray(indices, dtype=np.int64)
        return LocalSet(tuple(self.paths[i] for i in idx), self.targets[idx], self.base_probabilities[idx],
                        self.features[idx], self.image_stats[idx], (), tuple(self.file_sha256[i] for i in idx))


def read_local_samples(source: str | Path, split: str | None = None) -> list[Sample]:
    """A folder with class sub-folders (or split/class/...) or a split CSV; `split` keeps that split only."""
    samples = read_dataset(source)
    if split is not None:
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise DatasetError(f"{source}: no images in split {split!r}")
    return samples


def check_counts(counts: dict[str, int], source: str) -> list[str]:
    """Raise below MIN_PER_CLASS images of a class; return warning lines below WARN_PER_CLASS."""
    text = ", ".join(f"{n} {label}" for label, n in counts.items())
    low = [label for label, n in counts.items() if n < MIN_PER_CLASS]
    if low:
        raise AdaptDataError(f"{source}: {text} usable images; adapt needs at least {MIN_PER_CLASS} of each class "
                             f"(too few: {', '.join(low)})")
    few = [label for label, n in counts.items() if n < WARN_PER_CLASS]
    if few:
        return [f"{source}: only {text} images (fewer than {WARN_PER_CLASS} {' and '.join(few)}): the "
                "cross-validated numbers have very wide intervals; label more images if you can"]
    return []


def image_stats(gray: np.ndarray) -> np.ndarray:
    """mean, SD of the decoded grey levels, width, height."""
    return np.array([gray.mean(), gray.std(), gray.shape[1], gray.shape[0]], dtype=np.float64)


def _decode(samples: list[Sample], contract) -> tuple[list, list, list, list]:
    pixels, stats, kept, failures = [], [], [], []
    for sample in samples:
        try:
            gray = decode_gray(sample.path)
            pixels.append(to_model_input(gray, contract))
            stats.append(image_stats(gray))
            kept.append(sample)
        except FractureEdgeError as exc:
            failures.append((str(sample.path), failure_for(str(sample.path), str(exc)).reason))
        except (OSError, MemoryError) as exc:
            failures.append((str(sample.path), f"cannot read ({getattr(exc, 'strerror', None) or exc})"))
    return pixels, stats, kept, failures


def load_local_set(samples: list[Sample], classifier, batch_size: int = 16, show: bool | None = None,
                   hashes: dict[str, str] | None = None) -> LocalSet:
    """Decode every sample, run the classifier for its probability and 'features' output, a batch at a time.
    `hashes`: {path: file sha256} already computed (checks.file_hashes); the others are hashed here."""
    hashes = hashes or {}
    paths, targets, probs, feats, stats, failures, digests = [], [], [], [], [], [], []
    chunks = list(batches(samples, batch_size))
    for chunk in progress(chunks, "adapt: features", total=len(chunks), enabled=show):
        pixels, chunk_stats, kept, chunk_failures = _decode(chunk, classifier.contract)
        failures += chunk_failures
        if not kept:
            continue
        p, extra = classifier.outputs(np.stack(pixels), ("features",))
        probs.append(p)
        feats.append(extra["features"].reshape(len(kept), -1))
        stats += chunk_stats
        for sample in kept:
            paths.append(str(sample.path))
            targets.append(sample.target)
            digests.append(hashes.get(str(sample.path)) or _sha256_or_empty(sample.path))
    for path, reason in failures:
        log.warning("skipped %s: %s", path, reason)
    return LocalSet(tuple(paths), np.asarray(targets, np.int64),
                    np.concatenate(probs) if probs else np.zeros(0),
                    np.concatenate(feats) if feats else np.zeros((0, 0)),
                    np.asarray(stats, np.float64).reshape(-1, len(STAT_NAMES)), tuple(failures), tuple(digests))


def _sha256_or_empty(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return ""
