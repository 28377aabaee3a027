"""Leak-free split: duplicate groups (connected components of exact/near pairs) never cross splits;
stratified by class; deterministic for a seed."""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..edge_runtime.atomic import write_text
from ..edge_runtime.dataset import LABELS, Sample
from .data_check import DataCheckReport

SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class SplitOptions:
    val: float = 0.15
    test: float = 0.15
    seed: int = 0

    def fractions(self) -> dict[str, float]:
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ValueError(f"--val and --test must be in 0..1 with val + test < 1 (got {self.val}, {self.test})")
        return {"train": 1.0 - self.val - self.test, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class SplitRow:
    sample: Sample
    split: str
    group: str


def duplicate_groups(report: DataCheckReport) -> list[list[int]]:
    """Connected components over exact/near pairs and given CSV groups, readable samples only, sorted."""
    parent = {i: i for i, s in enumerate(report.samples) if str(s.path) not in _bad(report)}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links = [(p.first, p.second) for p in report.exact_pairs + report.near_pairs]
    by_given: dict[str, int] = {}
    for i in parent:
        given = report.samples[i].group
        if given:
            links.append((by_given.setdefault(given, i), i))
    for a, b in links:
        parent[root(a)] = root(b)
    components: dict[int, list[int]] = {}
    for i in sorted(parent):
        components.setdefault(root(i), []).append(i)
    return sorted(components.values())


def assign_splits(report: DataCheckReport, options: SplitOptions) -> list[SplitRow]:
    """Give every group a split, per class (the group's majority label), filling each split towards its share."""
    fractions = options.fractions()
    rng = np.random.default_rng(options.seed)
    rows: list[SplitRow] = []
    groups = duplicate_groups(report)
    for label in LABELS:
        mine = [g for g in groups if _majority_label(report, g) == label]
        order = rng.permutation(len(mine))
        total = sum(len(g) for g in mine)
        filled = Counter()
        for k in order:
            split = _neediest_split(filled, fractions, total)
            filled[split] += len(mine[k])
            group_id = f"g{min(mine[k]):06d}"
            rows += [SplitRow(report.samples[i], split, group_id) for i in mine[k]]
    return sorted(rows, key=lambda r: (SPLIT_ORDER.index(r.split), str(r.sample.path)))


def _neediest_split(filled: Counter, fractions: dict[str, float], total: int) -> str:
    """The split furthest below its target count (ties: train, val, test order)."""
    deficits = [(fractions[s] * total - filled[s], -k, s) for k, s in enumerate(SPLIT_ORDER) if fractions[s] > 0]
    return max(deficits)[2]


def _majority_label(report: DataCheckReport, group: list[int]) -> str:
    votes = Counter(report.samples[i].label for i in group)
    return max(LABELS, key=lambda label: (votes[label], label == LABELS[1]))


def _bad(report: DataCheckReport) -> set[str]:
    return {p for p, _ in report.unreadable}


def write_split_csv(rows: list[SplitRow], out: str | os.PathLike) -> Path:
    """Write path,label,split,group atomically; paths relative to the CSV's folder (absolute across drives)."""
    out = Path(out)
    base = out.resolve().parent
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "split", "group"])
    for row in rows:
        writer.writerow([_relative(row.sample.path, base), row.sample.label, row.split, row.group])
    return write_text(out, buffer.getvalue())


def _relative(path: Path, base: Path) -> str:
    resolved = Path(path).resolve()
    try:
        return Path(os.path.relpath(resolved, base)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return str(resolved)


def split_counts(rows: list[SplitRow]) -> dict:
    """split -> label -> n for the written split."""
    counts = {s: {label: 0 for label in LABELS} for s in SPLIT_ORDER}
    for row in rows:
        counts[row.split][row.sample.label] += 1
    return counts
