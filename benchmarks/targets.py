"""The issue's targets (224 px, batch 1, 2 threads) and how far a benchmark run meets or misses each."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .options import BENCH_FORMATS

TARGET_THREADS, TARGET_BATCH, TARGET_SIZE = 2, 1, 224


@dataclass(frozen=True)
class Target:
    key: str
    description: str
    limit: float
    direction: str          # "<=" (lower is better) or ">="
    unit: str


TARGETS: tuple[Target, ...] = (
    Target("int8_p50", "tflite-int8 p50 latency (batch 1, 2 threads)", 35.0, "<=", "ms"),
    Target("int8_vs_keras", "tflite-int8 speed-up over the fastest Keras path (p50)", 2.5, ">=", "x"),
    Target("int8_size", "tflite-fp32 size / tflite-int8 size", 4.0, ">=", "x"),
    Target("int8_delta_f1", "|ΔF1| tflite-int8 vs keras (balanced threshold)", 0.005, "<=", ""),
    Target("int8_delta_auc", "|ΔAUC| tflite-int8 vs keras", 0.005, "<=", ""),
    Target("bench_wall", "full bench of all formats on the split", 600.0, "<=", "s"),
    Target("dynamic_vs_fp32", "tflite-int8-dynamic p50 / tflite-fp32 p50, same run (batch 1, 2 threads)", 0.55,
           "<=", "x"),
    Target("dynamic_size", "tflite-int8-dynamic size", 8.0, "<=", "MB"),
)


@dataclass(frozen=True)
class TargetResult:
    key: str
    description: str
    limit: str
    measured: float | None
    met: bool | None        # None: not measured in this run
    verdict: str            # "met by 3.1 ms (9 %)", "missed by ...", or why it was not measured

    def to_dict(self) -> dict:
        return asdict(self)


def judge(target: Target, measured: float | None, why_not: str = "") -> TargetResult:
    """Compare a measured value with the target; the verdict says by how much it is met or missed."""
    limit_text = f"{target.direction} {target.limit:g} {target.unit}".strip()
    if measured is None:
        return TargetResult(target.key, target.description, limit_text, None, None, why_not or "not measured")
    lower_is_better = target.direction == "<="
    met = measured <= target.limit if lower_is_better else measured >= target.limit
    gap = abs(target.limit - measured)
    relative = f" ({100.0 * gap / target.limit:.0f} %)" if target.limit else ""
    verdict = f"{'met' if met else 'missed'} by {gap:.4g} {target.unit}".rstrip() + relative
    return TargetResult(target.key, target.description, limit_text, measured, met, verdict)


def _p50(rows: list[dict], label_test: Callable[[str], bool]) -> float | None:
    values = [r["latency"]["p50_ms"] for r in rows
              if r["status"] == "ok" and label_test(r["label"]) and r["threads"] == TARGET_THREADS
              and r["batch"] == TARGET_BATCH]
    return min(values) if values else None


def _size(rows: list[dict], label: str) -> int | None:
    return next((r["file_bytes"] for r in rows if r["label"] == label and r.get("file_bytes")), None)


def rejected_label(fmt: str) -> str:
    """The bench row label of an artifact export rejected (measured with --include-rejected)."""
    return f"{fmt} (rejected)"


def measured_label(rows: list[dict], fmt: str) -> str:
    """The row a format's targets are judged on: the exported artifact, else the one export rejected."""
    labels = {r["label"] for r in rows if r["status"] == "ok"}
    return fmt if fmt in labels or rejected_label(fmt) not in labels else rejected_label(fmt)


def int8_label(rows: list[dict]) -> str:
    """The row the full-integer int8 targets are judged on."""
    return measured_label(rows, "tflite-int8")


def _int8_delta(accuracy: list[dict], key: str, label: str) -> tuple[float | None, str]:
    row = next((r for r in accuracy if r["label"] == label and r["status"] == "ok"), None)
    if row is None:
        return None, "tflite-int8 accuracy not measured"
    if not (row.get("reference") or "").startswith("keras"):
        return None, "needs the keras reference (TensorFlow not installed or keras row failed)"
    value = row["vs_reference"].get(key)
    return (abs(value) if value is not None else None), "AUC undefined (one class only)"


def evaluate_targets(report: dict) -> list[TargetResult]:
    """Every target judged against one report's rows (bench.json's 'rows', 'accuracy', 'wall_s', 'run')."""
    rows, accuracy = report["rows"], report["accuracy"]
    size_note = "" if report["run"].get("input_size") == TARGET_SIZE else \
        f"input is {report['run'].get('input_size')} px, the targets are set at {TARGET_SIZE} px"
    where = f"no ok tflite-int8 row at batch {TARGET_BATCH}, {TARGET_THREADS} threads (use --threads 2)"
    int8_row = int8_label(rows)
    int8 = _p50(rows, lambda label: label == int8_row)
    keras = _p50(rows, lambda label: label.startswith("keras"))
    fp32_size, int8_size = _size(rows, "tflite-fp32"), _size(rows, int8_row)
    d_f1, why_f1 = _int8_delta(accuracy, "delta_f1", int8_row)
    d_auc, why_auc = _int8_delta(accuracy, "delta_auc", int8_row)
    run = report["run"]
    full = not run.get("quick") and not run.get("sample") and set(BENCH_FORMATS) <= set(run.get("formats", ()))
    dynamic_row = measured_label(rows, "tflite-int8-dynamic")
    dynamic, fp32 = _p50(rows, lambda label: label == dynamic_row), _p50(rows, lambda label: label == "tflite-fp32")
    dynamic_size = _size(rows, dynamic_row)
    by_key = {t.key: t for t in TARGETS}
    results = [
        judge(by_key["int8_p50"], int8, where),
        judge(by_key["int8_vs_keras"], keras / int8 if int8 and keras else None,
              "needs ok keras and tflite-int8 rows at batch 1, 2 threads"),
        judge(by_key["int8_size"], fp32_size / int8_size if fp32_size and int8_size else None,
              "needs tflite-fp32 and tflite-int8 artifacts"),
        judge(by_key["int8_delta_f1"], d_f1, why_f1),
        judge(by_key["int8_delta_auc"], d_auc, why_auc),
        judge(by_key["bench_wall"], report.get("wall_s") if full else None, "not a full run (--quick, --sample or a subset of --formats)"),
        judge(by_key["dynamic_vs_fp32"], dynamic / fp32 if dynamic and fp32 else None,
              f"needs ok tflite-int8-dynamic and tflite-fp32 rows at batch {TARGET_BATCH}, {TARGET_THREADS} threads"),
        judge(by_key["dynamic_size"], dynamic_size / 1e6 if dynamic_size else None, "no tflite-int8-dynamic artifact"),
    ]
    def rejected_note(key: str) -> str:
        row = dynamic_row if key.startswith("dynamic") else int8_row if key.startswith("int8") else None
        return f"measured on the {row.split(' ')[0]} artifact export rejected (--include-rejected)" \
            if row is not None and row.endswith("(rejected)") else ""
    return [_annotate(r, "" if r.key.startswith("dynamic") else size_note, rejected_note(r.key)) for r in results]


def _annotate(result: TargetResult, *notes: str) -> TargetResult:
    notes = tuple(n for n in notes if n)
    if result.measured is None or not notes:
        return result
    return TargetResult(result.key, result.description, result.limit, result.measured, result.met,
                        "; ".join((result.verdict, *notes)))
