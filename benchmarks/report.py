"""bench.json and bench.md: the side-by-side table, the device it ran on, the targets and the notes."""
from __future__ import annotations

import logging
from pathlib import Path

from ..edge_runtime import atomic
from ..edge_runtime.confidence import RATES, format_ci, format_difference
from ..edge_runtime.environment import device_line
from .shift_suite import shift_lines
from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)

SCHEMA = "fracture-edge.bench/1"
REPORT_KEYS = ("schema", "environment", "run", "model", "rows", "accuracy", "gates", "targets", "notes", "wall_s")
ROW_KEYS = ("label", "format", "status", "reason", "runtime", "threads", "batch", "file_bytes", "load_ms",
            "first_ms", "latency", "gmacs_per_s", "peak_rss_mb", "model_rss_mb")
ACCURACY_KEYS = ("label", "format", "status", "reason", "summary", "ci", "reference", "vs_reference", "gate")


def validate_report(report: dict) -> dict:
    """Raise ValueError naming the first missing key of the report or of one of its rows."""
    for key in REPORT_KEYS:
        if key not in report:
            raise ValueError(f"bench report: missing key {key!r}")
    for where, keys in (("rows", ROW_KEYS), ("accuracy", ACCURACY_KEYS)):
        for i, row in enumerate(report[where]):
            missing = [k for k in keys if k not in row]
            if missing:
                raise ValueError(f"bench report: {where}[{i}] ({row.get('label')}) misses {', '.join(missing)}")
    return report


def write_report(report: dict, out_dir: str | Path) -> list[Path]:
    """Validate, then atomically write bench.json and bench.md into out_dir; returns the paths."""
    validate_report(report)
    out_dir = Path(out_dir)
    return [atomic.write_json(out_dir / "bench.json", report),
            atomic.write_text(out_dir / "bench.md", render_markdown(report))]


def _num(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{suffix}"


def _ms(value) -> str:
    """Milliseconds with 3 significant digits below 100 ms (tiny models), one decimal above."""
    if value is None:
        return "–"
    return f"{value:.1f}" if value >= 100 else f"{value:.3g}"


def _size(nbytes) -> str:
    if not nbytes:
        return "–"
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 100_000 else f"{nbytes / 1e3:.1f} kB"


def speed_table(rows: list[dict]) -> list[str]:
    lines = ["| row | runtime | threads | batch | size | load ms | first ms | p50 ms | p90 ms | mean ± std ms "
             "| images/s | GMAC/s | runtime RSS MB | model RSS MB | peak RSS MB | status |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in rows:
        lat = r.get("latency") or {}
        mean_std = f"{_ms(lat['mean_ms'])} ± {_ms(lat['std_ms'])}" if lat else "–"
        lines.append(
            f"| {r['label']} | {r.get('runtime') or '–'} | {r.get('threads') or '–'} | {r.get('batch') or '–'} "
            f"| {_size(r.get('file_bytes'))} | {_ms(r.get('load_ms'))} | {_ms(r.get('first_ms'))} "
            f"| {_ms(lat.get('p50_ms'))} | {_ms(lat.get('p90_ms'))} | {mean_std} "
            f"| {_num(lat.get('images_per_s'))} | {_num(r.get('gmacs_per_s'), 2)} | {_num(r.get('rss_baseline_mb'))} "
            f"| {_num(r.get('model_rss_mb'))} | {_num(r.get('peak_rss_mb'))} | {r['status']} |")
    return lines


def accuracy_table(rows: list[dict]) -> list[str]:
    lines = ["| row | AUC (95 % CI) | accuracy | F1 | sensitivity | specificity | screening sens / spec "
             "| agreement | ΔF1 | ΔAUC (95 % CI), p | gate | status |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    for r in rows:
        s = r.get("summary") or {}
        bal, scr = s.get("balanced") or {}, s.get("screening") or {}
        vs, ci = r.get("vs_reference") or {}, r.get("ci") or {}
        screening = f"{scr['sensitivity']:.3f} / {scr['specificity']:.3f}" if scr else "–"
        auc = format_ci(ci["auc"]) if "auc" in ci else _num(s.get("auc"), 4)
        paired = vs.get("auc_difference")
        delta_auc = format_difference(paired, 4) if paired else _signed(vs.get("delta_auc"))
        lines.append(
            f"| {r['label']} | {auc} | {_num(bal.get('accuracy'), 4)} | {_num(bal.get('f1'), 4)} "
            f"| {_num(bal.get('sensitivity'), 4)} | {_num(bal.get('specificity'), 4)} | {screening} "
            f"| {_num(vs.get('agreement'), 4)} | {_signed(vs.get('delta_f1'))} | {delta_auc} "
            f"| {_gate_cell(r.get('gate'))} | {r['status']} |")
    return lines


def interval_table(rows: list[dict]) -> list[str]:
    """95 % CIs of the rates at both operating points, one line per (row, threshold); empty when none has CIs."""
    measured = [r for r in rows if r.get("ci")]
    if not measured:
        return []
    ci = measured[0]["ci"]
    lines = [f"95 % CIs: {ci['method']}, {ci['resamples']} resamples (seeded); ΔAUC above is paired (the same "
             "resamples for the row and the reference), p two-sided.", "",
             "| row | threshold | " + " | ".join(RATES) + " |", "|---|---|" + "--:|" * len(RATES)]
    for r in measured:
        for point in THRESHOLD_NAMES:
            if point in r["ci"]:
                lines.append(f"| {r['label']} | {point} | " + " | ".join(format_ci(r["ci"][point][rate])
                                                                        for rate in RATES) + " |")
    return lines


def _signed(value) -> str:
    return "–" if value is None else f"{value:+.4f}"


def _gate_cell(gate: dict | None) -> str:
    if not gate or not gate.get("checked"):
        return "–"
    return "pass" if gate.get("passed") else "FAIL: " + "; ".join(gate.get("failures", []))


def targets_table(targets: list[dict]) -> list[str]:
    lines = ["| target | limit | measured | verdict |", "|---|---|--:|---|"]
    for t in targets:
        measured = "–" if t["measured"] is None else f"{t['measured']:.4g}"
        lines.append(f"| {t['description']} | {t['limit']} | {measured} | {t['verdict']} |")
    return lines


def problems(report: dict) -> list[str]:
    """One bullet per row that did not run, with its reason (the tables only show the status)."""
    seen, lines = set(), []
    for r in report["rows"] + report["accuracy"]:
        key = (r["label"], r["status"])  # a row that failed to load also failed its accuracy pass: say it once
        if r["status"] != "ok" and key not in seen:
            seen.add(key)
            lines.append(f"- **{r['label']}** ({r['status']}): {r.get('reason') or 'no reason recorded'}")
    return lines


def header(report: dict) -> list[str]:
    run, model, env = report["run"], report["model"], report["environment"]
    macs = model.get("macs")
    return [
        f"# fracture-edge bench: {Path(run['run_dir']).name}",
        "",
        f"- **Device**: {device_line(env)}",
        f"- **Date**: {env.get('date')}; wall time {report['wall_s']:.0f} s"
        f"{_bench_peak(report.get('bench_peak_rss_mb'))}; command `{run.get('command', '')}`",
        f"- **Run folder**: `{run['run_dir']}`; input {run.get('input_size')} px",
        f"- **Images**: {run['n_images']} of split `{run['split']}` from `{run['data']}` "
        f"({run['n_failed']} skipped as unreadable{'; a stratified sample' if run.get('sample') else ''}); "
        f"decode + resize {run.get('preprocess_ms', 0):.1f} ms/image (not included in the latencies)",
        f"- **Thresholds** (from bundle.json): balanced {run['thresholds']['balanced']:.4f}, "
        f"screening {run['thresholds']['screening']:.4f}",
        f"- **Model**: {_macs_text(macs)} per image ({model['macs_method']})" if macs else
        f"- **Model**: MACs {model['macs_method']}",
    ]


def _bench_peak(peak_mb: float | None) -> str:
    """'; bench process peak RSS N MB' (the parent holding the images; each row's own memory is in the table)."""
    return "" if peak_mb is None else f"; bench process peak RSS {peak_mb:.0f} MB (images, report; rows are measured apart)"


def _macs_text(macs: int) -> str:
    return f"{macs / 1e9:.3f} G MACs" if macs >= 1e8 else f"{macs / 1e6:.3f} M MACs"


def heatmap_lines(heatmaps: dict | None) -> list[str]:
    """Where each artifact's heatmap points (pointing game on boxed fractured test images), from the export report."""
    if not heatmaps:
        return []
    keras = heatmaps["keras"]
    game, base = keras.get("pointing_game"), keras.get("center_baseline")
    if not game:
        return []
    lines = ["", "## Heatmaps: does it point at the fracture?", "",
             f"Pointing game as `export` measured it ({heatmaps.get('date')}): the heatmap's peak within "
             f"{game['margin_px']} px of a FracAtlas box, {game['images']} fractured {game['split']} images; "
             f"image centre (chance) {base['hit_rate']:.1%}.", "",
             "| row | pointing game | heatmap correlation with Keras (median / 5th pct) |", "|---|--:|--:|",
             f"| keras | {game['hit_rate']:.1%} | reference |"]
    for name, facts in heatmaps.get("formats", {}).items():
        point = facts.get("pointing_game") or {}
        lines.append(f"| {name} | {_num(100 * point['hit_rate'] if point else None, 1, ' %')} | "
                     f"{_num(facts.get('correlation_median'), 4)} / {_num(facts.get('correlation_p5'), 4)} |")
    return lines


def render_markdown(report: dict) -> str:
    """The whole bench.md."""
    run = report["run"]
    parts = header(report)
    parts += ["", "## Speed and memory", "",
              "Latency is per call of the runtime's predict on an already preprocessed batch (batch images "
              "per call); images/s = batch / mean; each row ran in its own process. Memory of that process: "
              "runtime RSS = with the runtime library imported, before the model; model RSS = after loading the "
              "model and one inference, minus runtime RSS (the model's own share: weights, arena, input batch); "
              "peak RSS = the process's own peak while loading and timing the model (what a device must have "
              "free for it), before the accuracy pass reads every image.",
              "", *speed_table(report["rows"])]
    parts += ["", f"## Accuracy on `{run['split']}` ({run['n_images']} images, batch 1)", "",
              f"Metrics at the balanced threshold; agreement, ΔF1 and ΔAUC against **{report.get('reference') or '–'}**.",
              "", *accuracy_table(report["accuracy"])]
    intervals = interval_table(report["accuracy"])
    if intervals:
        parts += ["", *intervals]
    parts += shift_lines(report.get("shifts"))
    parts += ["", "## Targets", "", *targets_table(report["targets"])]
    parts += heatmap_lines(report.get("heatmaps"))
    trouble = problems(report)
    if trouble:
        parts += ["", "## Rows that did not run", "", *trouble]
    if report["notes"]:
        parts += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    if report.get("plots"):
        parts += ["", "## Plots", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]]]
    return "\n".join(parts) + "\n"
