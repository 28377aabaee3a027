"""bundle.json: the contract between stages (labels, thresholds, input contract, artifacts, metrics)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import atomic
from .errors import FractureEdgeError
from .preprocessing import InputContract

SCHEMA_VERSION = 1
BUNDLE_FILENAME = "bundle.json"
REQUIRED_KEYS = ("schema_version", "labels", "positive_label", "thresholds", "input", "output")
THRESHOLD_NAMES = ("balanced", "screening")


class BundleError(FractureEdgeError):
    """bundle.json is missing, unreadable or does not follow the schema."""


def validate_bundle(bundle: dict, source: str = "bundle") -> dict:
    """Check the keys every consumer relies on; raise BundleError naming the first problem."""
    missing = [k for k in REQUIRED_KEYS if k not in bundle]
    if missing:
        raise BundleError(f"{source}: missing key(s) {', '.join(missing)}")
    if bundle["schema_version"] != SCHEMA_VERSION:
        raise BundleError(f"{source}: schema_version {bundle['schema_version']} is not supported "
                          f"(this fracture-edge reads version {SCHEMA_VERSION})")
    labels = bundle["labels"]
    if not (isinstance(labels, list) and len(labels) == 2 and bundle["positive_label"] in labels):
        raise BundleError(f"{source}: labels must be two names including positive_label")
    for name in THRESHOLD_NAMES:
        value = bundle["thresholds"].get(name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise BundleError(f"{source}: thresholds.{name} must be a number in [0, 1], got {value!r}")
    try:
        InputContract.from_dict(bundle["input"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{source}: invalid input contract: {exc}") from None
    return bundle


def load_bundle(path: str | os.PathLike) -> dict:
    """Load and validate bundle.json from a file or a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / BUNDLE_FILENAME
    if not path.is_file():
        raise BundleError(f"{path}: no bundle.json here (is this a fracture-edge run folder?)")
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: cannot read bundle ({exc})") from None
    return validate_bundle(bundle, str(path))


def save_bundle(run_dir: str | os.PathLike, bundle: dict) -> Path:
    """Validate and atomically write run_dir/bundle.json."""
    validate_bundle(bundle)
    return atomic.write_json(Path(run_dir) / BUNDLE_FILENAME, bundle)


def input_contract(bundle: dict) -> InputContract:
    return InputContract.from_dict(bundle["input"])


def resolve_threshold(bundle: dict, choice: str | float | None) -> tuple[str, float]:
    """Map 'balanced' | 'screening' | a number | None (the bundle's default) to (name, value)."""
    if choice is None:
        choice = bundle["thresholds"].get("default", "balanced")
    if isinstance(choice, str) and choice in THRESHOLD_NAMES:
        return choice, float(bundle["thresholds"][choice])
    try:
        value = float(choice)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be one of {', '.join(THRESHOLD_NAMES)} or a number in [0, 1], "
                         f"got {choice!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {value}")
    return "custom", value


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_record(path: str | os.PathLike) -> dict:
    """The bundle's record of one artifact file: name, bytes, sha256."""
    path = Path(path)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
