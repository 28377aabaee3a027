"""What `fracture-edge export` decided about each artifact of a run, in words for a table: read from the run's
export_report.json ("pass", "pass: deploy", "rejected: specificity, and more flips than the dither")."""
from __future__ import annotations

import json
from pathlib import Path

EXPORT_REPORT = "export_report.json"   # export/report.py JSON_NAME (not imported: that package needs TensorFlow)
GATE_FAILED = "gate failed"            # export/outcome.py: the status of a row the fidelity verdict rejected
REFERENCE, UNKNOWN = "reference", "–"
SHORT_REASON = 60                      # characters of an error kept in the table


def read_export_report(run_dir: str | Path) -> dict | None:
    """RUN/export_report.json as a dict; None when it is missing, unreadable or not a JSON object."""
    try:
        export = json.loads((Path(run_dir) / EXPORT_REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):       # unreadable, not JSON, nested absurdly deep
        return None
    return export if isinstance(export, dict) else None


def is_rejected_label(label: str, fmt: str) -> bool:
    """Whether a bench row measured the artifact export rejected: 'tflite-int8 (rejected)',
    'tflite-int8 (rejected, tflite-runtime)' (runner._artifact_jobs writes the notes)."""
    notes = label[len(fmt):].strip().strip("()")
    return label.startswith(fmt) and "rejected" in [note.strip() for note in notes.split(",")]


def verdict_words(label: str, fmt: str, export: dict | None) -> str:
    """The export verdict of the artifact behind one bench row: "reference" for the Keras rows, "pass" or
    "pass: deploy" for the artifact export chose to deploy, "rejected: <short reason>", or "–" when the
    export report does not record the format."""
    if fmt == "keras":
        return REFERENCE
    rows = [r for r in (export or {}).get("rows", []) if isinstance(r, dict)]
    row = next((r for r in rows if r.get("format") == fmt), None)
    if is_rejected_label(label, fmt) or (row or {}).get("status") == GATE_FAILED:
        return "rejected: " + short_reason(row) if row else "rejected"
    if row is None:
        return UNKNOWN
    if row.get("status") != "ok":                        # export or verify failed, yet a file is there
        return f"{row.get('status')}: {short_reason(row)}"
    deploy = (export or {}).get("deploy") or {}
    return "pass: deploy" if isinstance(deploy, dict) and deploy.get("format") == fmt else "pass"


def short_reason(row: dict) -> str:
    """Why export did not pass a row, in a few words: the rates whose non-inferiority failed and the noise
    floor ("specificity, and more flips than the dither"), else the start of its error."""
    gate = row.get("gate") if isinstance(row.get("gate"), dict) else {}
    failed = []
    for metric, test in (gate.get("non_inferiority") or {}).items():
        name = "AUC" if metric == "auc" else metric.rsplit(" ", 1)[-1]
        if isinstance(test, dict) and not test.get("passed", True) and name not in failed:
            failed.append(name)
    if any(isinstance(f, dict) and not f.get("passed", True) for f in (gate.get("noise_floor") or {}).values()):
        failed.append("more flips than the dither")
    if failed:
        return failed[0] if len(failed) == 1 else ", ".join(failed[:-1]) + ", and " + failed[-1]
    error = str(row.get("error") or "no reason recorded").split("; ")[0]
    return error if len(error) <= SHORT_REASON else error[:SHORT_REASON - 1].rstrip() + "…"
