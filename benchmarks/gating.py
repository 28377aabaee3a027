"""The fidelity verdict for compressed artifacts: a thin adapter over export/gates.py (the one definition).

The rules live in fracture_edge.export.gates only (docs/fidelity-verdict.md); this module feeds it a bench
accuracy row and the reference row, and turns the verdict into the report's 'gate' record. bench has no
dither-1 pass of the reference, so its verdict leaves the noise floor unmeasured (export measures it) and
says so.
"""
from __future__ import annotations

import logging

import numpy as np

from ..edge_runtime.formats import FORMATS

log = logging.getLogger(__name__)

GATES_MISSING = "not checked: fracture_edge.export.gates is not available in this install"


def is_compressed(format_name: str) -> bool:
    """fp16 and int8 artifacts are gated; fp32 ones and keras are the references."""
    fmt = FORMATS.get(format_name)
    return fmt is not None and fmt.compressed


def gates_module():
    """export/gates.py, or None when it cannot be imported (it is pure numpy, so normally it can)."""
    try:
        from ..export import gates
    except ImportError as exc:
        log.info("fidelity verdict unavailable: %s", exc)
        return None
    return gates


def check_row(row: dict, reference: dict | None, labels: np.ndarray, thresholds: dict) -> dict | None:
    """The gate record of one accuracy row: None for ungated formats, else checked/passed/failures."""
    if not is_compressed(row["format"]) or row["status"] != "ok":
        return None
    if reference is None:
        return {"checked": False, "reason": "no reference row ran"}
    module = gates_module()
    if module is None:
        return {"checked": False, "reason": GATES_MISSING}
    verdict = _call_gates(module, row, reference, labels, thresholds)
    return {"checked": True, "passed": bool(verdict["passed"]), "failures": list(verdict["failures"]),
            "reference": reference["label"], "gates": verdict.get("gates"),
            "noise_floor": "not measured in bench (export measures it on the verification images)"}


def _call_gates(module, row: dict, reference: dict, labels: np.ndarray, thresholds: dict) -> dict:
    """Adapter to export/gates.py's check_gates (switch here if its signature changes)."""
    result = module.check_gates(row["format"], np.asarray(reference["probs"]), np.asarray(row["probs"]),
                                np.asarray(labels), thresholds, module.VerdictRules())
    return {"passed": result.passed, "failures": list(result.reasons), "gates": result.to_dict()}


def gate_failures(accuracy_rows: list[dict]) -> list[str]:
    """'label: reason' for every compressed row whose gate failed (what --gate exits non-zero on)."""
    out = []
    for row in accuracy_rows:
        gate = row.get("gate") or {}
        if gate.get("checked") and not gate.get("passed"):
            out.append(f"{row['label']}: {'; '.join(gate.get('failures', [])) or 'gate failed'}")
    return out
