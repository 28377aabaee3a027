"""Find the artifact and the bundle for a model argument (run folder, bundle.json or one artifact file)
and check artifact files against the sha256 recorded in the bundle."""
from __future__ import annotations

import importlib.util
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .backends import TFLITE_RUNTIMES
from .bundle import BUNDLE_FILENAME, BundleError, file_sha256, load_bundle, validate_bundle
from .embedded import read_embedded_bundle
from .errors import FractureEdgeError
from .formats import FORMAT_PREFERENCE, FORMATS, Format, format_for_file, get_format
from .paths import lexists, path_mode

log = logging.getLogger(__name__)

# The integrity rule (docs/reliability.md, "Integrity"): 'require' is what predict, info and bench apply; the flag
# --allow-unverified selects 'allow-unverified'; 'trust-embedded' is the library default (see verify_resolved).
INTEGRITY_MODES = ("require", "allow-unverified", "trust-embedded")


class ArtifactMismatchError(FractureEdgeError):
    """An artifact file does not match the size/sha256 its bundle records (tampered, truncated, other run)."""


class UnverifiedArtifactError(FractureEdgeError):
    """No bundle.json records the artifact's sha256 (a lone file), and unverified artifacts are not allowed."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path             # the artifact file to load
    format: Format
    bundle: dict
    bundle_source: str     # "run folder", "bundle.json", "embedded", "explicit"


def artifact_file(bundle: dict, folder: Path, fmt: Format) -> Path:
    """Where the bundle says the artifact of `fmt` lives (default: the format's file name)."""
    record = bundle.get("artifacts", {}).get(fmt.name) or {}
    return folder / record.get("file", fmt.filename)


def artifact_record_for(bundle: dict, filename: str) -> dict | None:
    """The bundle's record of the artifact called `filename`, if it lists one."""
    for record in bundle.get("artifacts", {}).values():
        if isinstance(record, dict) and record.get("file") == filename:
            return record
    return None


def check_artifact(path: Path, record: dict | None) -> str:
    """'ok', 'missing', 'unrecorded' (no sha256 in the bundle), 'unreadable (...)' or a mismatch description."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not record or "sha256" not in record:
        return "unrecorded"
    if "bytes" in record and info.st_size != record["bytes"]:
        return f"size {info.st_size} bytes, bundle records {record['bytes']} (truncated or replaced)"
    try:
        actual = file_sha256(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if actual != record["sha256"]:
        return f"sha256 {actual[:16]}... differs from the bundle's {record['sha256'][:16]}... (modified or replaced)"
    return "ok"


def verify_artifact(path: Path, bundle: dict) -> None:
    """Refuse an artifact whose size/sha256 differs from what the bundle records."""
    status = check_artifact(path, artifact_record_for(bundle, path.name))
    if status not in ("ok", "unrecorded", "missing"):
        raise ArtifactMismatchError(f"{path}: does not match its bundle.json: {status}; "
                                    "re-export the model or copy the file again")


def integrity_record(resolved: ResolvedModel) -> tuple[dict | None, str]:
    """(the size/sha256 record that vouches for the artifact, or None; where it was looked for).

    An embedded bundle cannot hold its own file's hash, so a lone artifact is vouched for by a bundle.json
    beside it that lists the file; every other source is its own bundle's record."""
    if resolved.bundle_source != "embedded":
        where = {"run folder": f"the run folder's {BUNDLE_FILENAME}", "bundle.json": f"the {BUNDLE_FILENAME} beside it",
                 "explicit": "the bundle passed in"}.get(resolved.bundle_source, resolved.bundle_source)
        return artifact_record_for(resolved.bundle, resolved.path.name), where
    sibling = resolved.path.parent / BUNDLE_FILENAME
    if not lexists(str(sibling)):
        return None, f"no {BUNDLE_FILENAME} beside it"
    try:
        return artifact_record_for(load_bundle(sibling), resolved.path.name), str(sibling)
    except BundleError as exc:
        return None, f"{BUNDLE_FILENAME} beside it is unusable: {str(exc).splitlines()[0]}"


def verify_resolved(resolved: ResolvedModel, integrity: str = "trust-embedded") -> str:
    """Apply the integrity rule (INTEGRITY_MODES); return 'verified' or 'unverified', or raise.

    A recorded size/sha256 that differs is always refused (ArtifactMismatchError). An artifact that no
    bundle records is refused under 'require' and runs with a warning under 'allow-unverified'.
    'trust-embedded' (the library default) is 'require' for run folders and bundle.json files, but runs a
    lone artifact on its embedded bundle, or with a bundle passed in code, without looking for a record:
    export checks fresh artifacts against Keras before it rewrites bundle.json, so a neighbouring
    bundle.json may still describe the previous export."""
    if integrity not in INTEGRITY_MODES:
        raise ValueError(f"unknown integrity mode {integrity!r}; valid: {', '.join(INTEGRITY_MODES)}")
    if integrity == "trust-embedded" and resolved.bundle_source == "embedded":
        return "unverified"
    record, where = integrity_record(resolved)
    status = check_artifact(resolved.path, record)
    if status == "ok":
        return "verified"
    if status.startswith("unreadable"):
        raise FractureEdgeError(f"{resolved.path}: cannot read model {status[len('unreadable '):]}")
    if status not in ("unrecorded", "missing"):
        raise ArtifactMismatchError(f"{resolved.path}: does not match its bundle.json ({where}): {status}; "
                                    "re-export the model or copy the file again")
    if integrity == "require" or (integrity == "trust-embedded" and resolved.bundle_source != "explicit"):
        raise UnverifiedArtifactError(
            f"{resolved.path}: unverified: no bundle.json records its sha256 ({where}), so a modified file "
            f"would go unnoticed; put the run's {BUNDLE_FILENAME} beside it, or pass --allow-unverified")
    if integrity == "allow-unverified":
        log.warning("%s: unverified (no bundle.json records its sha256: %s); running it on %s", resolved.path,
                    where, "its embedded bundle" if resolved.bundle_source == "embedded" else where)
    return "unverified"


def runnable(fmt: Format) -> bool:
    """Whether a runtime for the format's backend is installed (checked without importing it)."""
    modules = {"tflite": [m.split(".")[0] for m, _ in TFLITE_RUNTIMES], "onnx": ["onnxruntime"]}.get(fmt.backend, [])
    return any(_installed(name) for name in modules)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _pick_format(bundle: dict, folder: Path, name: str | None) -> Format:
    """--format, else the first of FORMAT_PREFERENCE present in the folder whose runtime is installed."""
    if name is not None:
        fmt = get_format(name)
        if not fmt.edge:
            raise ValueError("keras is the training format, not an edge format; choose one of "
                             + ", ".join(FORMAT_PREFERENCE))
        return fmt
    present = [FORMATS[n] for n in FORMAT_PREFERENCE if is_file(artifact_file(bundle, folder, FORMATS[n]))]
    if not present:
        raise FractureEdgeError(f"{folder}: no exported model here (looked for "
                                f"{', '.join(FORMATS[n].filename for n in FORMAT_PREFERENCE)}); run fracture-edge export")
    usable = [fmt for fmt in present if runnable(fmt)]
    if not usable:  # let the backend raise the one-line error naming the extra to install
        return present[0]
    if usable[0] is not present[0]:
        log.info("%s: using %s (no runtime installed for %s)", folder, usable[0].name, present[0].name)
    return usable[0]


def is_file(path: Path) -> bool:
    mode = path_mode(str(path))
    return mode is not None and stat.S_ISREG(mode)


def _resolve_file(path: Path, fmt_name: str | None, bundle: dict | None) -> ResolvedModel:
    fmt = format_for_file(str(path))
    if fmt_name is not None and fmt_name != fmt.name:
        raise ValueError(f"{path} is a {fmt.name} model, but --format {fmt_name} was asked for")
    if bundle is not None:
        return ResolvedModel(path, fmt, validate_bundle(bundle, "bundle"), "explicit")
    embedded = read_embedded_bundle(path)
    if embedded is not None:
        return ResolvedModel(path, fmt, validate_bundle(embedded, f"{path} (embedded bundle)"), "embedded")
    if lexists(str(path.parent / BUNDLE_FILENAME)):
        return ResolvedModel(path, fmt, load_bundle(path.parent / BUNDLE_FILENAME), "bundle.json")
    raise BundleError(f"{path}: no embedded bundle and no bundle.json beside it, so the labels, "
                      "thresholds and input size are unknown")


def resolve_model(model: str | os.PathLike, fmt_name: str | None = None,
                  bundle: dict | None = None) -> ResolvedModel:
    """Turn a run folder, a bundle.json path or an artifact file into (artifact, format, bundle)."""
    path = Path(model)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise FractureEdgeError(f"{path}: model not found (give a run folder, bundle.json, .tflite or .onnx)") from None
    except OSError as exc:
        raise FractureEdgeError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise FractureEdgeError(f"{path}: not a regular file or folder (a device or pipe), so not a model")
    if stat.S_ISREG(mode) and path.suffix.lower() != ".json":
        return _resolve_file(path, fmt_name, bundle)
    folder = path if stat.S_ISDIR(mode) else path.parent
    source = "explicit" if bundle is not None else ("run folder" if stat.S_ISDIR(mode) else "bundle.json")
    bundle = validate_bundle(bundle, "bundle") if bundle is not None else load_bundle(path)
    fmt = _pick_format(bundle, folder, fmt_name)
    artifact = artifact_file(bundle, folder, fmt)
    if not is_file(artifact):
        raise FractureEdgeError(f"{artifact}: the {fmt.name} model is not in {folder} (export it first)")
    return ResolvedModel(artifact, fmt, bundle, source)
