"""Read a labeled dataset: folder layout (split/class/image) or a split CSV (path,label,split[,group]).

A split CSV is read as UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8" writes one), one line of
at most MAX_CSV_LINE characters at a time: a line longer than that (a file that is not a split CSV, or a
hostile one) is refused naming its line before it is held in memory (csv parses a whole line into a list of
fields: a 420 MB line of short fields cost 3.3 GB)."""
from __future__ import annotations

import csv
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .decoding import IMAGE_SUFFIXES
from .errors import FractureEdgeError
from .paths import Problem, child_folders, lexists, path_mode, walk

log = logging.getLogger(__name__)

POSITIVE, NEGATIVE = "fractured", "not_fractured"
LABELS = (NEGATIVE, POSITIVE)  # index = class id; the model outputs P(fractured)
SPLITS = ("train", "val", "test")
SPLIT_CSV = "split.csv"
MAX_CSV_LINE = 1 << 20           # characters; a real row (a path of at most 4,096 bytes and a few columns) is far less

_LABEL_ALIASES = {
    POSITIVE: ("fractured", "fracture", "fractures", "positive", "abnormal", "yes", "1"),
    NEGATIVE: ("not_fractured", "not fractured", "not-fractured", "notfractured", "non_fractured",
               "non fractured", "non-fractured", "nonfractured", "unfractured", "normal", "negative",
               "no", "0"),
}
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}


class DatasetError(FractureEdgeError):
    """The dataset folder or CSV cannot be used; the message names the path and the reason."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str            # fractured | not_fractured
    split: str            # train | val | test | all
    group: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def target(self) -> int:
        return 1 if self.label == POSITIVE else 0


def normalize_label(name: str) -> str | None:
    key = name.strip().lower()
    for label, aliases in _LABEL_ALIASES.items():
        if key in aliases:
            return label
    return None


def normalize_split(name: str) -> str | None:
    key = name.strip().lower()
    for split, aliases in _SPLIT_ALIASES.items():
        if key in aliases:
            return split
    return None


def read_dataset(source: str | os.PathLike) -> list[Sample]:
    """All samples of a dataset folder (its split.csv when present, else the folder layout) or CSV."""
    source = Path(source)
    mode = path_mode(str(source))
    if mode is None:
        raise DatasetError(f"{source}: no such file or folder (or it cannot be looked at)")
    if not stat.S_ISDIR(mode):
        samples = _read_csv(source)
    elif lexists(str(source / SPLIT_CSV)):
        samples = _read_csv(source / SPLIT_CSV)
    else:
        samples = _read_folders(source)
    if not samples:
        raise DatasetError(f"{source}: no images found (expected split/class/image, class/image or a split CSV)")
    return samples


def select_split(samples: list[Sample], split: str, source: str = "dataset") -> list[Sample]:
    chosen = [s for s in samples if s.split == split]
    if not chosen:
        have = sorted({s.split for s in samples})
        raise DatasetError(f"{source}: split {split!r} has no images (splits present: {', '.join(have)})")
    return chosen


def require_both_classes(samples: list[Sample], what: str) -> None:
    """Raise a clear error when a split lacks one of the two classes."""
    present = {s.label for s in samples}
    for label in LABELS:
        if label not in present:
            raise DatasetError(f"{what}: class {label!r} has no images")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _class_folders(folder: Path, problems: list[Problem]) -> list[tuple[Path, str]]:
    found = []
    for child in map(Path, child_folders(str(folder), problems)):
        label = normalize_label(child.name)
        if label is None:
            log.warning("%s: folder name is not a known class name; ignored", child)
        else:
            found.append((child, label))
    return found


def _read_folders(root: Path) -> list[Sample]:
    """split/class/image or class/image. A folder that cannot be listed stops the read (DatasetError naming
    every one): a dataset silently missing a class folder would make every count and leak check wrong."""
    samples: list[Sample] = []
    problems: list[Problem] = []
    split_dirs = [(p, normalize_split(p.name)) for p in map(Path, child_folders(str(root), problems))]
    split_dirs = [(p, s) for p, s in split_dirs if s is not None]
    layouts = [(d, s) for d, s in split_dirs] if split_dirs else [(root, "all")]
    for folder, split in layouts:
        for class_dir, label in _class_folders(folder, problems):
            for path in sorted(map(Path, walk(str(class_dir), True, problems))):
                if _is_image(path):
                    samples.append(Sample(path, label, split))
    if problems:
        raise DatasetError("; ".join(f"{p.path}: {p.reason}" for p in dict.fromkeys(problems))
                           + " (the dataset would be incomplete: fix the permissions or move the folder out)")
    return samples


def _read_csv(csv_path: Path) -> list[Sample]:
    base = csv_path.parent
    samples: list[Sample] = []
    mode = path_mode(str(csv_path))
    if mode is not None and not stat.S_ISREG(mode):  # a pipe would block, a device never end
        raise DatasetError(f"{csv_path}: not a folder or a regular file (a device or pipe), so not a dataset")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(_bounded_lines(fh, csv_path))
            missing = {"path", "label"} - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))} "
                                   "(expected path,label,split[,group])")
            for line, row in enumerate(reader, start=2):
                label = normalize_label(row["label"] or "")
                split = normalize_split(row.get("split") or "") if row.get("split") else "all"
                if label is None or split is None:
                    raise DatasetError(f"{csv_path}:{line}: unknown label {row['label']!r} or split {row.get('split')!r}")
                if not (row["path"] or "").strip():
                    raise DatasetError(f"{csv_path}:{line}: empty path")
                path = Path(row["path"])
                meta = {k: v for k, v in row.items() if k not in ("path", "label", "split", "group")}
                samples.append(Sample(path if path.is_absolute() else base / path, label, split,
                                      row.get("group") or None, meta))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read split CSV ({exc})") from None
    return samples


def _bounded_lines(fh, csv_path: Path):
    """The lines of `fh`, each read with a limit: DatasetError naming the line when one is longer than MAX_CSV_LINE."""
    number = 0
    while line := fh.readline(MAX_CSV_LINE + 1):
        number += 1
        if len(line) > MAX_CSV_LINE and not line.endswith(("\n", "\r")):
            raise DatasetError(f"{csv_path}:{number}: line longer than {MAX_CSV_LINE:,} characters, so not a split "
                               "CSV row")
        yield line
