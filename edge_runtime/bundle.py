"""bundle.json: the contract between stages (labels, thresholds, input contract, artifacts, metrics)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from . import atomic
from .bundle_schema import SCHEMA_VERSION, THRESHOLD_NAMES, bundle_problems
from .errors import FractureEdgeError
from .preprocessing import InputContract

BUNDLE_FILENAME = "bundle.json"
MAX_BUNDLE_BYTES = 16 << 20   # a real bundle is a few kB; refuse to read a huge or endless file into memory


class BundleError(FractureEdgeError):
    """bundle.json is missing, unreadable or does not follow the schema."""


def validate_bundle(bundle: dict, source: str = "bundle") -> dict:
    """Check `bundle` against the declared schema (bundle_schema.py); BundleError lists every problem,
    one line each. Consumers may index every schema field once this has passed."""
    problems = bundle_problems(bundle)
    if len(problems) == 1:
        raise BundleError(f"{source}: {problems[0]}")
    if problems:
        raise BundleError(f"{source}: {len(problems)} problems with the bundle (schema version {SCHEMA_VERSION}):\n"
                          + "\n".join(f"  {line}" for line in problems))
    return bundle


def load_bundle(path: str | os.PathLike) -> dict:
    """Load and validate bundle.json from a file or a run folder."""
    path = Path(path)
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            path = path / BUNDLE_FILENAME
        info = os.stat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: no bundle.json here (is this a fracture-edge run folder?)") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read bundle ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{path}: not a regular file (a folder, device or pipe), so not a bundle")
    if info.st_size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: {info.st_size:,} bytes, too large for a bundle (limit {MAX_BUNDLE_BYTES:,})")
    try:
        bundle = parse_bundle_text(path.read_bytes())
    except OSError as exc:
        raise BundleError(f"{path}: cannot read bundle ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise BundleError(f"{path}: cannot read bundle ({exc})") from None
    return validate_bundle(bundle, str(path))


def parse_bundle_text(raw: bytes | str) -> object:
    """JSON text -> object; ValueError (with the reason) for bad UTF-8, bad JSON or absurd nesting."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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
