"""Find the artifact and the bundle for a model argument (run folder, bundle.json or one artifact file)
and check artifact files against the sha256 recorded in the bundle."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .bundle import BUNDLE_FILENAME, BundleError, file_sha256, load_bundle, validate_bundle
from .embedded import read_embedded_bundle
from .errors import FractureEdgeError
from .formats import FORMATS, Format, format_for_file, get_format

# Default artifact when a run folder is given without --format: smallest and fastest first.
FORMAT_PREFERENCE = ("tflite-int8", "tflite-fp32", "onnx-fp32", "tflite-fp16", "onnx-int8")


class ArtifactMismatchError(FractureEdgeError):
    """An artifact file does not match the size/sha256 its bundle records (tampered, truncated, other run)."""


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
    """'ok', 'missing', 'unrecorded' (no sha256 in the bundle) or a mismatch description."""
    if not path.is_file():
        return "missing"
    if not record or "sha256" not in record:
        return "unrecorded"
    size = path.stat().st_size
    if "bytes" in record and size != record["bytes"]:
        return f"size {size} bytes, bundle records {record['bytes']} (truncated or replaced)"
    actual = file_sha256(path)
    if actual != record["sha256"]:
        return f"sha256 {actual[:16]}... differs from the bundle's {record['sha256'][:16]}... (modified or replaced)"
    return "ok"


def verify_artifact(path: Path, bundle: dict) -> None:
    """Refuse an artifact whose size/sha256 differs from what the bundle records."""
    status = check_artifact(path, artifact_record_for(bundle, path.name))
    if status not in ("ok", "unrecorded", "missing"):
        raise ArtifactMismatchError(f"{path}: does not match its bundle.json: {status}; "
                                    "re-export the model or copy the file again")


def verify_resolved(resolved: ResolvedModel, check_sibling: bool = False) -> None:
    """Check the artifact against the bundle it was resolved with. An embedded bundle cannot hold its own
    file's hash; with check_sibling (info does this) a bundle.json beside a lone artifact that lists the
    file is checked instead. The Classifier does not: export verifies fresh artifacts before it rewrites
    bundle.json, so the neighbour may still describe the previous export."""
    if resolved.bundle_source != "embedded":
        verify_artifact(resolved.path, resolved.bundle)
        return
    sibling = resolved.path.parent / BUNDLE_FILENAME
    if check_sibling and sibling.is_file():
        try:
            sibling_bundle = load_bundle(sibling)
        except BundleError:
            return  # an unreadable neighbour does not stop a self-describing artifact
        verify_artifact(resolved.path, sibling_bundle)


def _pick_format(bundle: dict, folder: Path, name: str | None) -> Format:
    if name is not None:
        fmt = get_format(name)
        if fmt.backend == "keras":
            raise ValueError("keras is the training format, not an edge format; choose one of "
                             + ", ".join(FORMAT_PREFERENCE))
        return fmt
    for candidate in FORMAT_PREFERENCE:
        if artifact_file(bundle, folder, FORMATS[candidate]).is_file():
            return FORMATS[candidate]
    raise FractureEdgeError(f"{folder}: no exported model here (looked for "
                            f"{', '.join(FORMATS[n].filename for n in FORMAT_PREFERENCE)}); run fracture-edge export")


def _resolve_file(path: Path, fmt_name: str | None, bundle: dict | None) -> ResolvedModel:
    fmt = format_for_file(str(path))
    if fmt_name is not None and fmt_name != fmt.name:
        raise ValueError(f"{path} is a {fmt.name} model, but --format {fmt_name} was asked for")
    if bundle is not None:
        return ResolvedModel(path, fmt, validate_bundle(bundle, "bundle"), "explicit")
    embedded = read_embedded_bundle(path)
    if embedded is not None:
        return ResolvedModel(path, fmt, validate_bundle(embedded, f"{path} (embedded bundle)"), "embedded")
    if (path.parent / BUNDLE_FILENAME).is_file():
        return ResolvedModel(path, fmt, load_bundle(path.parent), "bundle.json")
    raise BundleError(f"{path}: no embedded bundle and no bundle.json beside it, so the labels, "
                      "thresholds and input size are unknown")


def resolve_model(model: str | os.PathLike, fmt_name: str | None = None,
                  bundle: dict | None = None) -> ResolvedModel:
    """Turn a run folder, a bundle.json path or an artifact file into (artifact, format, bundle)."""
    path = Path(model)
    if not path.exists():
        raise FractureEdgeError(f"{path}: model not found (give a run folder, bundle.json, .tflite or .onnx)")
    if path.is_file() and path.suffix.lower() != ".json":
        return _resolve_file(path, fmt_name, bundle)
    folder = path if path.is_dir() else path.parent
    source = "explicit" if bundle is not None else ("run folder" if path.is_dir() else "bundle.json")
    bundle = validate_bundle(bundle, "bundle") if bundle is not None else load_bundle(path)
    fmt = _pick_format(bundle, folder, fmt_name)
    artifact = artifact_file(bundle, folder, fmt)
    if not artifact.is_file():
        raise FractureEdgeError(f"{artifact}: the {fmt.name} model is not in {folder} (export it first)")
    return ResolvedModel(artifact, fmt, bundle, source)
