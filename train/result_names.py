"""File names of results scored on a dataset: the run's own data (its home result) or another one.

A run folder keeps one home result per format and split, `eval_<format>_<split>.json`, scored on the data the
bundle records (bundle.json data.source). A result on any other dataset goes to a file whose name says which:
`eval_<format>_<split>_on-<name>-<hash>.json`, <name> the data folder's (or CSV's) name and <hash> the first
8 hex digits of the sha256 of its resolved path; so `eval RUN --data OTHER` never replaces the home result, and
two other datasets with the same folder name get different files.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

NAME_CHARS = 32


def _resolved(source) -> Path:
    return Path(source).expanduser().resolve()


def is_home(source, home) -> bool:
    """Whether `source` is the dataset the run records as its own (`home`; None: it records none)."""
    return home is not None and _resolved(source) == _resolved(home)


def data_tag(source) -> str:
    """'<name>-<hash>' of a dataset folder or CSV: readable, and different for different paths."""
    path = _resolved(source)
    stem = path.stem if path.suffix.lower() == ".csv" else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:NAME_CHARS] or "data"
    return f"{name}-{hashlib.sha256(str(path).encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def result_name(prefix: str, fmt: str, split: str, source, home) -> str:
    """'<prefix>_<fmt>_<split>' on the home data, '<prefix>_<fmt>_<split>_on-<tag>' on any other (no suffix)."""
    stem = f"{prefix}_{fmt}_{split}"
    return stem if is_home(source, home) else f"{stem}_on-{data_tag(source)}"
