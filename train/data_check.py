"""Dataset leakage check: counts, unreadable files, exact and near-duplicate pairs within and across splits."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..edge_runtime.dataset import LABELS, SPLITS, Sample
from ..edge_runtime.decoding import ImageDecodeError, decode_gray
from ..edge_runtime.progress import progress
from . import hashing

log = logging.getLogger(__name__)

NEAR_THRESHOLD = hashing.NEAR_THRESHOLD
MIN_SIMILARITY = hashing.MIN_SIMILARITY
EXAMPLE_PAIRS = 20
TRAIN = "train"


@dataclass(frozen=True)
class DuplicatePair:
    """Two samples (indices into the checked list) that show the same image."""

    first: int
    second: int
    kind: str                  # exact | near
    distance: int = 0          # dHash Hamming distance (0 for exact)
    similarity: float = 1.0    # aligned high-pass correlation (1 for exact)


@dataclass(frozen=True)
class Leak:
    """A val/test sample with an exact or near copy in train."""

    index: int
    train_index: int
    kind: str


@dataclass(frozen=True)
class DataCheckReport:
    samples: tuple[Sample, ...]
    counts: dict                                   # split -> label -> n (readable and unreadable)
    unreadable: tuple[tuple[str, str], ...]        # (path, reason)
    exact_pairs: tuple[DuplicatePair, ...]
    near_pairs: tuple[DuplicatePair, ...]
    leaks: tuple[Leak, ...]
    near_threshold: int = NEAR_THRESHOLD
    min_similarity: float = MIN_SIMILARITY
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def leak_count(self) -> int:
        return len(self.leaks)

    @property
    def unreadable_paths(self) -> frozenset[Path]:
        return frozenset(Path(p) for p, _ in self.unreadable)

    def pair_counts(self, pairs: tuple[DuplicatePair, ...]) -> dict:
        """Number of pairs within one split and across two splits."""
        across = sum(self.samples[p.first].split != self.samples[p.second].split for p in pairs)
        return {"within_split": len(pairs) - across, "across_splits": across}

    def leaks_by_split(self) -> dict:
        found = defaultdict(int)
        for leak in self.leaks:
            found[self.samples[leak.index].split] += 1
        return {split: found[split] for split in SPLITS if split != TRAIN}

    def to_dict(self) -> dict:
        """JSON-ready summary (paths as strings, at most EXAMPLE_PAIRS example pairs)."""
        return {
            "images": len(self.samples),
            "counts": self.counts,
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "exact_pairs": self.pair_counts(self.exact_pairs),
            "near_pairs": self.pair_counts(self.near_pairs),
            "leaks": {"total": self.leak_count, **self.leaks_by_split()},
            "near_threshold": self.near_threshold,
            "min_similarity": self.min_similarity,
            "examples": [self._pair_dict(p) for p in self.example_pairs()],
            "warnings": list(self.warnings),
        }

    def example_pairs(self, limit: int = EXAMPLE_PAIRS) -> list[DuplicatePair]:
        """Cross-split pairs first (they are the leaks), then the rest, closest first."""
        pairs = list(self.exact_pairs) + list(self.near_pairs)
        pairs.sort(key=lambda p: (self.samples[p.first].split == self.samples[p.second].split,
                                  p.kind != "exact", -p.similarity))
        return pairs[:limit]

    def _pair_dict(self, pair: DuplicatePair) -> dict:
        a, b = self.samples[pair.first], self.samples[pair.second]
        return {"kind": pair.kind, "a": str(a.path), "split_a": a.split, "b": str(b.path), "split_b": b.split,
                "distance": pair.distance, "similarity": round(pair.similarity, 4)}

    def summary_lines(self, examples: int = 5) -> list[str]:
        """Human-readable report: counts table, problems, leak summary, a few example pairs."""
        lines = [f"{'split':<8}" + "".join(f"{label:>15}" for label in LABELS) + f"{'total':>8}"]
        for split, by_label in self.counts.items():
            row = [by_label.get(label, 0) for label in LABELS]
            lines.append(f"{split:<8}" + "".join(f"{n:>15}" for n in row) + f"{sum(row):>8}")
        lines.append(f"unreadable files: {len(self.unreadable)}")
        lines += [f"  {path}: {reason}" for path, reason in self.unreadable[:examples]]
        for name, pairs in (("exact", self.exact_pairs), ("near", self.near_pairs)):
            c = self.pair_counts(pairs)
            lines.append(f"{name} duplicate pairs: {c['within_split']} within a split, {c['across_splits']} across splits")
        per_split = ", ".join(f"{s} {n}" for s, n in self.leaks_by_split().items())
        lines.append(f"leaks (val/test images with a copy in train): {self.leak_count} ({per_split})")
        for pair in self.example_pairs(examples):
            d = self._pair_dict(pair)
            lines.append(f"  {d['kind']:<5} {d['split_a']}:{d['a']} ~ {d['split_b']}:{d['b']} "
                         f"(distance {d['distance']}, similarity {d['similarity']:.3f})")
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


def check_samples(samples: list[Sample], near_threshold: int = NEAR_THRESHOLD,
                  min_similarity: float = MIN_SIMILARITY, show_progress: bool = True) -> DataCheckReport:
    """Fingerprint every sample and find unreadable files, exact/near duplicates and train leaks."""
    if near_threshold < 0 or near_threshold > 256:
        raise ValueError(f"near threshold must be 0..256 bits, got {near_threshold}")
    samples = tuple(samples)
    prints, unreadable = fingerprint_samples(samples, show_progress)
    exact = exact_duplicate_pairs(prints)
    near = near_duplicate_pairs(prints, near_threshold, min_similarity)
    return DataCheckReport(samples, count_samples(samples), tuple(unreadable), tuple(exact), tuple(near),
                           tuple(find_leaks(samples, exact + near)), near_threshold, min_similarity,
                           tuple(class_warnings(samples)))


def fingerprint_samples(samples, show_progress: bool = True):
    """{index: ImageFingerprint} of the readable samples, and [(path, reason)] of the others."""
    prints: dict[int, hashing.ImageFingerprint] = {}
    unreadable: list[tuple[str, str]] = []
    for index, sample in enumerate(progress(samples, "hashing", len(samples), enabled=None if show_progress else False)):
        try:
            prints[index] = hashing.fingerprint(decode_gray(sample.path))
        except ImageDecodeError as exc:
            reason = str(exc).removeprefix(f"{sample.path}: ")
            log.warning("skipping %s: %s", sample.path, reason)
            unreadable.append((str(sample.path), reason))
    return prints, unreadable


def exact_duplicate_pairs(prints: dict) -> list[DuplicatePair]:
    """Every pair of samples whose decoded pixels are identical."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, fp in prints.items():
        groups[fp.exact].append(index)
    pairs = []
    for members in groups.values():
        pairs += [DuplicatePair(a, b, "exact") for k, a in enumerate(members) for b in members[k + 1:]]
    return pairs


def near_duplicate_pairs(prints: dict, near_threshold: int, min_similarity: float) -> list[DuplicatePair]:
    """Pairs that are not pixel-identical but match after a flip/rotation (two-stage search, see hashing)."""
    if len(prints) < 2:
        return []
    indices = sorted(prints)
    fps = [prints[i] for i in indices]
    candidates = hashing.candidate_pairs(np.stack([fp.dhash for fp in fps]), near_threshold)
    candidates = {k: d for k, d in candidates.items() if fps[k[0]].exact != fps[k[1]].exact}
    scores = hashing.confirm_similarity(fps, sorted(candidates))
    log.debug("near-duplicate candidates: %d, confirmed: %d", len(candidates),
              sum(s >= min_similarity for s in scores.values()))
    return [DuplicatePair(indices[i], indices[j], "near", candidates[(i, j)], score)
            for (i, j), score in sorted(scores.items()) if score >= min_similarity]


def find_leaks(samples, pairs: list[DuplicatePair]) -> list[Leak]:
    """One Leak per val/test sample that has an exact or near copy in train (exact preferred)."""
    found: dict[int, Leak] = {}
    for pair in pairs:
        for held, other in ((pair.first, pair.second), (pair.second, pair.first)):
            if samples[held].split in ("val", "test") and samples[other].split == TRAIN:
                if held not in found or (pair.kind == "exact" and found[held].kind != "exact"):
                    found[held] = Leak(held, other, pair.kind)
    return [found[i] for i in sorted(found)]


def count_samples(samples) -> dict:
    """split -> label -> number of samples, splits in train/val/test order."""
    counts: dict[str, dict[str, int]] = {}
    order = {s: k for k, s in enumerate(SPLITS)}
    for sample in sorted(samples, key=lambda s: order.get(s.split, len(order))):
        by_label = counts.setdefault(sample.split, {label: 0 for label in LABELS})
        by_label[sample.label] += 1
    return counts


def class_warnings(samples) -> list[str]:
    """A line for every split that lacks one of the classes."""
    present = defaultdict(set)
    for sample in samples:
        present[sample.split].add(sample.label)
    return [f"split {split!r} has no {label!r} images" for split, labels in present.items()
            for label in LABELS if label not in labels]
