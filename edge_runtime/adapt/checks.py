"""Checks of a site's labelled set before `fracture-edge adapt` reads a single feature (issue 25, item 9).

- The same image under both labels (by content: the sha256 of the file) is refused, naming the files: a head
  fitted on contradictory labels is meaningless, and its cross-validated numbers are too. The same image twice
  under one label is a warning (it counts twice in the cross-validation).
- Site images that the base model was trained (or validated, tested) on give optimistic numbers for the base
  model and for the head: adapt warns loudly when the site set overlaps the base bundle's data source
  (bundle.json data.source): by content where that folder is readable here (only files of a size some site
  image has are hashed), else by path (the same folder, or one inside the other).
numpy-free; the edge runtime only.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

from .data import AdaptDataError
from ..bundle import file_sha256
from ..dataset import Sample, read_dataset

log = logging.getLogger(__name__)

SHOWN = 5          # conflicting pairs named in the error line


def file_hashes(samples: list[Sample]) -> dict[str, str]:
    """{path: sha256 of the file} of every readable sample (an unreadable one is reported when it is decoded)."""
    hashes = {}
    for sample in samples:
        try:
            hashes[str(sample.path)] = file_sha256(sample.path)
        except OSError:
            continue
    return hashes


def check_duplicates(samples: list[Sample], hashes: dict[str, str], source: str) -> list[str]:
    """Raise AdaptDataError naming the files when one image is under both labels; warning lines for an image
    listed twice under one label."""
    by_hash: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        digest = hashes.get(str(sample.path))
        if digest:
            by_hash[digest][sample.label].append(str(sample.path))
    conflicts = [labels for labels in by_hash.values() if len(labels) > 1]
    if conflicts:
        pairs = ["; ".join(f"{label}: {', '.join(paths)}" for label, paths in sorted(labels.items()))
                 for labels in conflicts]
        more = f" (and {len(pairs) - SHOWN} more)" if len(pairs) > SHOWN else ""
        raise AdaptDataError(f"{source}: {len(conflicts)} image(s) appear under both labels (identical files): "
                             + " | ".join(pairs[:SHOWN]) + more + "; give each image one label")
    repeated = [paths for labels in by_hash.values() for paths in labels.values() if len(paths) > 1]
    if repeated:
        return [f"{source}: {len(repeated)} image(s) are listed more than once under the same label (identical "
                f"files, e.g. {', '.join(repeated[0])}): each copy counts in the cross-validation; remove the copies"]
    return []


def base_overlap_warning(base: dict, data: str | os.PathLike, hashes: dict[str, str]) -> str | None:
    """The loud line when the site set overlaps the base model's own data (see the module docstring), or None."""
    recorded = (base.get("data") or {}).get("source")
    if not recorded:
        return None
    base_source, site = Path(recorded).expanduser(), Path(data).expanduser()
    same = _contains(base_source, site) or _contains(site, base_source)
    copies = _content_overlap(base_source, hashes) if not same else None
    if same:
        relation = "is" if _resolved(site) == _resolved(base_source) else "is inside, or holds,"
        how = f"{data} {relation} the base model's own data folder ({recorded})"
    elif copies:
        how = (f"{sum(copies.values())} of {len(hashes)} site image(s) are copies of images in the base model's "
               f"own data ({recorded}: " + ", ".join(f"{n} {split}" for split, n in sorted(copies.items())) + ")")
    else:
        return None
    return (f"{how}: the base model was trained, or had its thresholds chosen, on these images, so the base "
            "model's numbers on them are optimistic and the adapted head learns little about the site; adapt on "
            "images the base model never saw")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _contains(folder: Path, inner: Path) -> bool:
    """Whether `inner` is `folder` or lies inside it (a split CSV counts as the folder it sits in)."""
    folder, inner = _resolved(folder), _resolved(inner)
    if folder.suffix.lower() == ".csv":
        folder = folder.parent
    return inner == folder or folder in inner.parents


def _content_overlap(base_source: Path, hashes: dict[str, str]) -> dict[str, int]:
    """{split: count} of site files identical to a file of the base dataset; {} when it cannot be read here."""
    try:
        samples = read_dataset(base_source)
    except Exception as exc:  # noqa: BLE001 (a moved or unreadable base dataset: nothing to compare by content)
        log.debug("adapt: base data %s not readable here (%s); overlap checked by path only", base_source, exc)
        return {}
    sizes, wanted = {_size(p) for p in hashes}, set(hashes.values())
    split_of: dict[str, str] = {}                 # sha256 -> split of a base file identical to a site file
    for sample in samples:
        if _size(sample.path) in sizes:
            try:
                digest = file_sha256(sample.path)
            except OSError:
                continue
            if digest in wanted:
                split_of.setdefault(digest, sample.split)
    found: dict[str, int] = defaultdict(int)
    for digest in hashes.values():
        if digest in split_of:
            found[split_of[digest]] += 1
    return dict(found)


def _size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
