"""Several run folders benched by one command, side by side: one row per (run, format), one bench.json, one
bench.md (a model x format table) and one latency-vs-AUC plot in OUT; each run's own bench is in OUT/<name>/."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..edge_runtime import atomic
from ..edge_runtime.confidence import format_ci
from ..edge_runtime.environment import device_line
from .points import batch1_rows, ok_accuracy, scored_by
from .report import _ms, _num, _size
from .run_set import RunPlan
from .verdicts import verdict_words

SCHEMA = "fracture-edge.bench-compare/1"
PLOT_NAME = "latency_vs_auc.png"


@dataclass(frozen=True)
class BenchedRun:
    """One run of the set after its bench: the plan, its bench report, its export report (None: none found)."""
    plan: RunPlan
    report: dict
    export: dict | None = None


@dataclass(frozen=True)
class CompareRow:
    """One (run, format label): its batch-1 latency at the most threads measured, size, AUC and export verdict."""
    run: str
    model: str                 # RunPlan.title
    label: str
    format: str
    status: str                # ok when some speed row of the label ran; else the first row's status
    reason: str
    file_bytes: int | None
    threads: int | None
    p50_ms: float | None
    images_per_s: float | None
    auc: float | None
    auc_ci: dict | None        # confidence.metric_cis()["auc"]: value, ci_low, ci_high
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def compare_rows(run: BenchedRun) -> list[CompareRow]:
    """One row per format label of the run's bench, in its report's order."""
    report = run.report
    fastest, scored = batch1_rows(report), ok_accuracy(report)
    rows = []
    for label in dict.fromkeys(r["label"] for r in report["rows"]):
        mine = [r for r in report["rows"] if r["label"] == label]
        ok = [r for r in mine if r["status"] == "ok"]
        speed = fastest.get(label) or {}
        accuracy = scored.get(scored_by(label, mine[0]["format"], scored)) or {}
        latency = speed.get("latency") or {}
        rows.append(CompareRow(
            run=run.plan.name, model=run.plan.title, label=label, format=mine[0]["format"],
            status="ok" if ok else mine[0]["status"], reason="" if ok else mine[0].get("reason") or "",
            file_bytes=next((r["file_bytes"] for r in mine if r.get("file_bytes")), None), threads=speed.get("threads"),
            p50_ms=latency.get("p50_ms"), images_per_s=latency.get("images_per_s"),
            auc=(accuracy.get("summary") or {}).get("auc"), auc_ci=(accuracy.get("ci") or {}).get("auc"),
            verdict=verdict_words(label, mine[0]["format"], run.export)))
    return rows


def compare_report(runs: list[BenchedRun], command: str = "", wall_s: float | None = None) -> dict:
    """The bench.json of the set: the environment once, the command, each run's facts, the combined rows."""
    environment = {k: v for k, v in runs[0].report["environment"].items() if k != "load_average"}
    return {
        "schema": SCHEMA,
        "environment": environment,
        "command": command,
        "runs": [{**run.plan.to_dict(), "bench": f"{run.plan.name}/bench.md",
                  "load_average": run.report["environment"].get("load_average"), "wall_s": run.report["wall_s"],
                  "data": run.report["run"]["data"], "split": run.report["run"]["split"],
                  "n_images": run.report["run"]["n_images"], "gate_failures": run.report["gates"]["failures"]}
                 for run in runs],
        "rows": [row.to_dict() for run in runs for row in compare_rows(run)],
        "wall_s": wall_s if wall_s is not None else sum(run.report["wall_s"] for run in runs),
        "notes": compare_notes(runs),
    }


def compare_notes(runs: list[BenchedRun]) -> list[str]:
    notes = ["The runs were measured one after another on this machine with the same options; the load may still "
             "differ between them (load average per run under Each run)."]
    if any(run.report["run"].get("quick") for run in runs):
        notes.append("--quick: smoke-test numbers, not a benchmark.")
    return notes


def render_markdown(report: dict) -> str:
    """The set's bench.md: the device once, the images, the model x format table, links to each run's bench."""
    runs, env = report["runs"], report["environment"]
    images = {(r["n_images"], r["split"], r["data"]) for r in runs}
    image_line = (f"{runs[0]['n_images']} of split `{runs[0]['split']}` from `{runs[0]['data']}`" if len(images) == 1
                  else "; ".join(f"{r['name']}: {r['n_images']} of `{r['split']}`" for r in runs))
    parts = [f"# fracture-edge bench: {len(runs)} runs compared", "",
             f"- **Device**: {device_line(env)}",
             f"- **Date**: {env.get('date')}; wall time {report['wall_s']:.0f} s; command `{report.get('command', '')}`",
             f"- **Images**: {image_line}", "", *compare_table(report["rows"], runs[0]["split"])]
    missing = [r for r in report["rows"] if r["status"] != "ok"]
    if missing:
        parts += ["", "Not measured:", "",
                  *[f"- **{r['run']}: {r['label']}** ({r['status']}): {r['reason'] or 'no reason recorded'}"
                    for r in missing]]
    parts += ["", "## Each run", "", *[run_line(r) for r in runs]]
    if report.get("notes"):
        parts += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    if report.get("plots"):
        parts += ["", "## Plot", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]]
    return "\n".join(parts) + "\n"


def compare_table(rows: list[dict], split: str) -> list[str]:
    """Model x format, grouped by model (the rows come run by run); only the rows that were measured."""
    measured = [r for r in rows if r["status"] == "ok"]
    threads = {r["threads"] for r in measured if r["threads"]}
    at = "most threads" if len(threads) != 1 else "1 thread" if threads == {1} else f"{threads.pop()} threads"
    lines = [f"| model | format | size | p50 ms (batch 1, {at}) | images/s | AUC, {split} (95 % CI) | verdict |",
             "|---|---|--:|--:|--:|--:|---|"]
    for r in measured:
        p50 = _ms(r["p50_ms"]) + (f" (t{r['threads']})" if at == "most threads" and r["threads"] else "")
        auc = format_ci(r["auc_ci"]) if r["auc_ci"] else _num(r["auc"], 3)
        verdict = f"**{r['verdict']}**" if r["verdict"] == "pass: deploy" else r["verdict"]
        lines.append(f"| {r['model']} | {r['label']} | {_size(r['file_bytes'])} | {p50} | {_num(r['images_per_s'])} "
                     f"| {auc} | {verdict.replace('|', '/')} |")
    return lines


def run_line(run: dict) -> str:
    load = run.get("load_average") or {}
    loads = " to ".join(_num(load.get(k), 2) for k in ("start", "end")) if any(v is not None for v in load.values()) \
        else "–"
    gates = f"; gate failures: {len(run['gate_failures'])}" if run["gate_failures"] else ""
    return (f"- [{run['name']}]({run['bench']}): {run['model']} (backbone {run.get('backbone') or '–'}), "
            f"input {run['input_px']} px, `{run['path']}`; wall time {run['wall_s']:.0f} s, load average {loads}{gates}")


def write_compare(report: dict, out_dir: str | Path, with_plots: bool = True) -> list[Path]:
    """bench.json, bench.md and (with matplotlib) latency_vs_auc.png of the set, moved into out_dir together."""
    from .bench import write_outputs
    from .compare_plot import plot_compare

    return write_outputs(report, out_dir, with_plots, drawers={PLOT_NAME: plot_compare}, write_report=write_files)


def write_files(report: dict, out_dir: Path) -> list[Path]:
    return [atomic.write_json(out_dir / "bench.json", report),
            atomic.write_text(out_dir / "bench.md", render_markdown(report))]
