"""Record an export in bundle.json: artifact hashes, quantization parameters, verification results."""
from __future__ import annotations

import copy
import datetime as dt
import platform

from ..edge_runtime.environment import module_versions
from ..edge_runtime.bundle import save_bundle
from ..edge_runtime.image_set import ImageSet


def gate_summary(gate: dict | None) -> dict | None:
    """The verification numbers worth keeping in the bundle (the report has the full detail)."""
    if gate is None:
        return None
    balanced = gate["per_threshold"].get("balanced", {})
    return {"passed": gate["passed"], "reason": gate["reason"], "images": gate["n"],
            "max_abs_dprob": gate["max_abs_dprob"], "auc": gate["auc"], "auc_keras": gate["auc_ref"],
            "f1_balanced": balanced.get("f1"), "f1_balanced_keras": balanced.get("f1_ref"),
            "min_agreement": gate["min_agreement"]}


def artifact_entry(row) -> dict:
    """bundle['artifacts'][format] for an artifact that passed."""
    entry = {"file": row.file, "bytes": row.bytes, "sha256": row.sha256, "format": row.format}
    for key in ("quantization", "kept_float", "opset"):
        if row.facts.get(key) not in (None, [], ()):
            entry[key] = row.facts[key]
    entry["tflite_runtime_2_14"] = (row.compat or {}).get("verdict")
    entry["verification"] = gate_summary(row.gate)
    return entry


def environment() -> dict:
    """What the export ran with (bundle.json's export.environment)."""
    return {**module_versions(("tensorflow", "onnxruntime", "ai_edge_litert")), "machine": platform.machine()}


def record_export(opts, bundle: dict, rows: list, images: ImageSet, seconds: float) -> dict:
    """Update RUN/bundle.json atomically; return the report context (gates, data, environment)."""
    bundle = copy.deepcopy(bundle)
    artifacts = bundle.setdefault("artifacts", {})
    for row in rows:
        if row.ok:
            artifacts[row.format] = artifact_entry(row)
        else:
            artifacts.pop(row.format, None)   # never advertise a failed or stale artifact
    for name, record in list(artifacts.items()):
        if not (opts.run_dir / str(record.get("file", ""))).is_file():
            artifacts.pop(name)                # its file is gone: the record would only mislead
    context = {
        "run": str(opts.run_dir),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds_total": round(seconds, 1),
        "gates": opts.gates.to_dict(),
        "verification": {"source": images.source, "splits": list(opts.verify_splits), "images": len(images),
                         "fractured": int(images.labels.sum()), "skipped_unreadable": len(images.failures),
                         "runtime": "fracture_edge.edge_runtime.Classifier (LiteRT / onnxruntime)"},
        "calibration": next((calibration_of(r) for r in rows if calibration_of(r)), None),
        "environment": environment(),
    }
    bundle["export"] = {k: context[k] for k in ("date", "gates", "verification", "calibration", "environment")}
    save_bundle(opts.run_dir, bundle)
    return context


def calibration_of(row) -> dict | None:
    keys = ("calibration_images", "calibration_fractured", "calibration_source")
    return {k: row.facts[k] for k in keys} if "calibration_images" in row.facts else None
