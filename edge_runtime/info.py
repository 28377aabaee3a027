"""`fracture-edge info`: print a model's bundle and check each artifact file against its recorded sha256."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .artifacts import check_artifact, resolve_model, verify_resolved
from .bundle import BUNDLE_FILENAME, load_bundle
from .errors import FractureEdgeError

OK_STATUSES = ("ok", "unrecorded", "missing")
METRIC_KEYS = (("f1", "F1"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))


def load_for_info(model: str) -> tuple[dict, str, Path, Path | None]:
    """(bundle, where it came from, folder of the artifacts, the lone artifact file or None)."""
    path = Path(model)
    if path.is_dir() or path.suffix.lower() == ".json":
        folder = path if path.is_dir() else path.parent
        return load_bundle(path), str(folder / BUNDLE_FILENAME), folder, None
    resolved = resolve_model(path)
    verify_resolved(resolved, check_sibling=True)
    return resolved.bundle, f"{resolved.bundle_source} ({resolved.path})", path.parent, path


def artifact_checks(bundle: dict, folder: Path, lone: Path | None) -> list[dict]:
    """One row per artifact the bundle lists (plus the lone file given), with its check status."""
    rows = []
    for name, record in bundle.get("artifacts", {}).items():
        if not isinstance(record, dict) or "file" not in record:
            continue
        path = folder / record["file"]
        if lone is not None and path.name != lone.name and not path.is_file():
            continue  # a lone artifact copied without its siblings
        rows.append({"format": name, "file": record["file"], "bytes": record.get("bytes"),
                     "sha256": record.get("sha256"), "status": check_artifact(path, record)})
    if lone is not None and not any(row["file"] == lone.name for row in rows):
        rows.append({"format": "?", "file": lone.name, "bytes": lone.stat().st_size, "sha256": None,
                     "status": "unrecorded"})
    return rows


def metric_lines(metrics: dict) -> list[str]:
    """'test: AUC 0.912, F1 0.801, sensitivity 0.850, specificity 0.880 (balanced, n=574)' per split."""
    lines = []
    for split, values in metrics.items():
        if not isinstance(values, dict) or "auc" not in values:
            continue
        at = values.get("balanced", {})
        parts = [f"AUC {values['auc']:.3f}"] + [f"{label} {at[key]:.3f}" for key, label in METRIC_KEYS if key in at]
        n = f", n={values['n']}" if "n" in values else ""
        lines.append(f"  {split}: {', '.join(parts)} (balanced threshold{n})")
    return lines


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


def run_info(args: argparse.Namespace) -> int:
    bundle, source, folder, lone = load_for_info(args.model)
    checks = artifact_checks(bundle, folder, lone)
    if args.json:
        print(json.dumps({"source": source, "bundle": bundle, "artifact_checks": checks}, indent=2))
    else:
        print(describe(bundle, source, checks))
    bad = [row for row in checks if row["status"] not in OK_STATUSES]
    if bad:
        raise FractureEdgeError("; ".join(f"{folder / row['file']}: {row['status']}" for row in bad))
    return 0
