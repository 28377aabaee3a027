"""`fracture-edge info`: print a model's bundle and check each artifact file against its recorded sha256."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from .artifacts import UnverifiedArtifactError, check_artifact, integrity_record, resolve_model, verify_resolved
from .bundle import BUNDLE_FILENAME, load_bundle
from .errors import FractureEdgeError
from .formats import format_for_file
from .paths import is_folder

OK_STATUSES = ("ok", "missing")   # 'unrecorded' is allowed only with --allow-unverified (the integrity rule)
METRIC_KEYS = (("f1", "F1"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))


@dataclass(frozen=True)
class InfoSource:
    bundle: dict
    source: str               # where the bundle came from
    folder: Path              # where the artifacts it lists live
    lone: Path | None = None  # the artifact file given, if one was
    lone_record: dict | None = None   # the size/sha256 record that vouches for it (a bundle.json beside it)


def load_for_info(model: str) -> InfoSource:
    """The bundle to describe; a lone artifact that differs from its record is refused here, as by predict."""
    path = Path(model)
    if is_folder(str(path)) or path.suffix.lower() == ".json":
        folder = path if is_folder(str(path)) else path.parent
        return InfoSource(load_bundle(path), str(folder / BUNDLE_FILENAME), folder)
    resolved = resolve_model(path)
    try:
        verify_resolved(resolved, "require")
    except UnverifiedArtifactError:
        pass  # shown as 'unrecorded' and judged by run_info after the description
    record, _ = integrity_record(resolved)
    return InfoSource(resolved.bundle, f"{resolved.bundle_source} ({resolved.path})", path.parent, path, record)


def artifact_checks(info: InfoSource) -> list[dict]:
    """One row per artifact the bundle lists (plus the lone file given), with its check status."""
    rows = []
    for name, record in info.bundle.get("artifacts", {}).items():
        path = info.folder / record["file"]
        if info.lone is not None and path.name == info.lone.name:
            continue  # the lone file is judged by the record that vouches for it, below
        status = check_artifact(path, record)
        if info.lone is not None and status == "missing":
            continue  # a lone artifact copied without its siblings
        rows.append({"format": name, "file": record["file"], "bytes": record.get("bytes"),
                     "sha256": record.get("sha256"), "status": status})
    if info.lone is not None:
        record = info.lone_record or {}
        rows.append({"format": format_for_file(str(info.lone)).name, "file": info.lone.name,
                     "bytes": record.get("bytes", _size(info.lone)), "sha256": record.get("sha256"),
                     "status": check_artifact(info.lone, info.lone_record)})
    return rows


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def metric_lines(metrics: dict) -> list[str]:
    """'test: AUC 0.912, F1 0.801, sensitivity 0.850, specificity 0.880 (balanced, n=574)' per split."""
    lines = []
    for split, values in metrics.items():
        if not isinstance(values, dict) or "auc" not in values:
            continue
        at = values.get("balanced", {})
        parts = [f"AUC {_number(values['auc'])}"] + [f"{label} {_number(at[key])}" for key, label in METRIC_KEYS
                                                      if key in at]
        n = f", n={values['n']}" if "n" in values else ""
        lines.append(f"  {split}: {', '.join(parts)} (balanced threshold{n})")
    return lines


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def describe(bundle: dict, source: str, checks: list[dict]) -> str:
    """The human-readable report."""
    t = bundle["thresholds"]
    i = bundle["input"]
    lines = [f"bundle: {source}",
             f"model: {bundle.get('model', 'unknown')} (schema v{bundle['schema_version']})",
             f"labels: {', '.join(bundle['labels'])} (positive: {bundle['positive_label']}; "
             f"output {bundle['output'].get('kind')} P({bundle['positive_label']}))",
             f"thresholds: balanced={t['balanced']:.4f}, screening={t['screening']:.4f}, "
             f"default={t.get('default', 'balanced')}",
             f"input: {i['size']}x{i['size']}x{i.get('channels', 3)} {i.get('layout', 'NHWC')}, {i.get('color')}, "
             f"resize {i.get('resize')}, fit {i.get('fit')}, pixels {i.get('pixel_range')}, {i.get('normalization')}"]
    metrics = metric_lines(bundle.get("metrics", {}))
    lines += ["metrics:"] + metrics if metrics else ["metrics: none recorded"]
    lines.append("artifacts:")
    for row in checks:
        digest = (row["sha256"] or "-")[:16]
        size = f"{row['bytes']:,} B" if row["bytes"] is not None else "? B"
        lines.append(f"  {row['format']:<12} {row['file']:<20} {size:>14}  sha256 {digest:<16}  {row['status']}")
    return "\n".join(lines)


def model_card_line(info: InfoSource) -> str:
    """Where the run's model card is (bundle.json points to it), or how to get one."""
    name = info.bundle.get("model_card")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        return "model card: none recorded (written by fracture-edge train)"
    path = info.folder / name
    return f"model card: {path}" if path.is_file() else f"model card: {path} (missing)"


def run_info(args: argparse.Namespace) -> int:
    info = load_for_info(args.model)
    checks = artifact_checks(info)
    if args.json:
        print(json.dumps({"source": info.source, "bundle": info.bundle, "artifact_checks": checks}, indent=2))
    else:
        print(describe(info.bundle, info.source, checks))
        print(model_card_line(info))
    allowed = OK_STATUSES + (("unrecorded",) if args.allow_unverified else ())
    bad = [row for row in checks if row["status"] not in allowed]
    if bad:
        raise FractureEdgeError("; ".join(f"{info.folder / row['file']}: {_explain(row['status'])}" for row in bad))
    return 0


def _explain(status: str) -> str:
    if status == "unrecorded":
        return ("unverified: no bundle.json records its sha256, so predict and bench refuse it without "
                "--allow-unverified")
    return status
