"""What an export run amounts to: the artifact to deploy, and the exit code (docs/fidelity-verdict.md)."""
from __future__ import annotations

from ..edge_runtime.formats import DEPLOY_PREFERENCE
from .gates import is_exact_format

GATE_FAILED = "gate failed"


def deploy_choice(rows: list):
    """The row to deploy: the first of DEPLOY_PREFERENCE that passed (the Android demo uses the same order)."""
    passed = {r.format: r for r in rows if r.ok}
    return next((passed[name] for name in DEPLOY_PREFERENCE if name in passed), None)


def export_problems(rows: list, named: bool) -> list[str]:
    """Why the export exits non-zero (empty: exit 0).

    Broken is always a problem: a format that could not be exported or verified, or an fp32 artifact that is
    not exact. A compressed artifact the verdict rejected is a reported result, unless it was named with
    --formats or no compressed artifact passed at all.
    """
    problems = [f"{r.format}: {r.status}: {r.error}" for r in rows
                if not r.ok and (r.status != GATE_FAILED or named or is_exact_format(r.format))]
    compressed = [r for r in rows if not is_exact_format(r.format)]
    if compressed and not any(r.ok for r in compressed):
        problems.append("no compressed artifact passed the fidelity verdict: "
                        + ", ".join(f"{r.format} ({r.status})" for r in compressed))
    return problems
