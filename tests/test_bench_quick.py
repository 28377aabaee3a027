"""`fracture-edge bench --quick` end to end on the tiny fixture models (no TensorFlow needed)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fracture_edge.benchmarks import runner, worker
from fracture_edge.edge_runtime.cli import main

FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"
PRESENT = ("tflite-fp32", "tflite-int8", "onnx-fp32")


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("bundle.json", "model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx"):
        shutil.copy(FIXTURE_MODELS / name, run / name)
    (run / "model_int8.onnx").write_bytes(b"not an onnx model")  # must fail with a reason, not stop the bench
    return run


def make_images(tmp_path: Path, levels: tuple[int, int] = (190, 60), count: int = 4, spread: float = 0.0) -> Path:
    """Bright images are 'fractured' for the fixture model; one unreadable file must be skipped."""
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for label, level in zip(("fractured", "not_fractured"), levels):
        folder = data / "test" / label
        folder.mkdir(parents=True)
        for i in range(count):
            mean = level + (rng.uniform(-spread, spread) if spread else 0.0)   # image brightness varies within a class
            pixels = np.clip(rng.normal(mean, 25, (40, 36)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i}.png")
    (data / "test" / "fractured" / "broken.png").write_bytes(b"not an image")
    return data


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    tmp = tmp_path_factory.mktemp("bench")
    run, data, out = make_run(tmp), make_images(tmp), tmp / "out"
    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "tensorflow_available", lambda: False)  # what a device install sees
    try:
        code = main(["bench", str(run), "--data", str(data), "--quick", "--threads", "1",
                     "--batch", "1,2", "--out", str(out), "--no-plots"])
    finally:
        patch.undo()
    return code, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_quick_bench_succeeds_and_measures_every_present_artifact(quick_bench):
    code, data, _ = quick_bench
    assert code == 0
    ok = [(r["label"], r["batch"]) for r in data["rows"] if r["status"] == "ok"]
    assert sorted(ok) == sorted((name, batch) for name in PRESENT for batch in (1, 2))
    for row in data["rows"]:
        if row["status"] == "ok":
            assert row["latency"]["runs"] >= 5 and row["peak_rss_mb"] > 0 and row["load_ms"] > 0
            assert 0 < row["rss_baseline_mb"] < row["peak_rss_mb"] and row["model_rss_mb"] is not None
            assert row["runtime"]
            assert row["details"]["tensorflow_loaded"] is False  # the device path never imports TensorFlow


@pytest.mark.parametrize("label, status", [
    ("tflite-fp16", "missing"), ("onnx-int8", "failed"),
    ("keras (eager)", "skipped"), ("keras (predict)", "skipped"), ("keras (tf.function)", "skipped"),
])
def test_quick_bench_keeps_rows_that_did_not_run(quick_bench, label, status):
    _, data, md = quick_bench
    row = next(r for r in data["rows"] if r["label"] == label)
    assert row["status"] == status and row["reason"]
    assert f"**{label}** ({status})" in md


def test_broken_artifact_keeps_its_accuracy_row_with_the_reason(quick_bench):
    _, data, _ = quick_bench
    row = next(r for r in data["accuracy"] if r["label"] == "onnx-int8")
    assert row["status"] == "failed" and "onnx" in row["reason"].lower()


@pytest.mark.parametrize("count, min_count, budget_s, expected", [
    (7, 0, 100.0, 7),      # all calls fit the budget
    (50, 5, 0.0, 5),       # budget exhausted at once: the minimum is still timed
    (3, 5, 0.0, 3),        # never more than asked for
])
def test_time_calls_respects_count_minimum_and_budget(count, min_count, budget_s, expected):
    calls = []
    samples = worker.time_calls(calls.append, "x", count, budget_s, min_count)
    assert len(samples) == len(calls) == expected
    assert all(s >= 0 for s in samples)


def test_latency_input_cycles_real_images():
    images = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    batch = worker.latency_input(images, 5)
    assert batch.shape == (5, 2, 2, 3) and batch.flags["C_CONTIGUOUS"]
    assert np.array_equal(batch[3], images[0]) and np.array_equal(batch[4], images[1])


def test_quick_bench_accuracy_on_the_real_images(quick_bench):
    _, data, md = quick_bench
    assert data["run"]["n_images"] == 8 and data["run"]["n_failed"] == 1
    rows = {r["label"]: r for r in data["accuracy"] if r["status"] == "ok"}
    assert set(rows) == set(PRESENT)
    assert data["reference"] == "tflite-fp32"
    for row in rows.values():
        assert row["summary"]["n"] == 8 and len(row["probs"]) == 8
        assert row["vs_reference"]["agreement"] is not None
    assert "Keras rows skipped: TensorFlow not installed" in md


def test_quick_bench_records_device_and_macs(quick_bench):
    _, data, md = quick_bench
    assert data["environment"]["cores_logical"] >= 1 and data["environment"]["python"]
    assert data["model"]["macs"] > 0
    assert "**Device**" in md


def test_unknown_format_is_one_clear_error(tmp_path, capsys):
    code = main(["bench", str(tmp_path), "--data", str(tmp_path), "--formats", "tflite-int4"])
    assert code != 0
    assert "valid formats" in capsys.readouterr().err


def test_run_folder_without_bundle_is_one_clear_error(tmp_path, capsys):
    code = main(["bench", str(tmp_path), "--data", str(tmp_path), "--quick"])
    assert code != 0
    assert "bundle.json" in capsys.readouterr().err


def test_a_worker_reports_its_own_peak_not_its_parents():
    """ru_maxrss of a child starts at its parent's peak (all rows once read 389.6 MB): the worker must not use it."""
    ballast = np.ones(300 * 2 ** 20 // 8)  # this (parent) process now holds 300 MB more
    code = "from fracture_edge.benchmarks.worker import peak_rss_mb; print(peak_rss_mb())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ballast.sum() > 0 and float(child.stdout) < 150


def test_quick_bench_accuracy_rows_carry_intervals_and_the_paired_auc_test(quick_bench):
    from fracture_edge.edge_runtime.confidence import RATES, metric_cis, paired_auc_difference

    _, data, md = quick_bench
    labels = np.asarray(data["run"]["labels"])
    rows = {r["label"]: r for r in data["accuracy"] if r["status"] == "ok"}
    reference = rows[data["reference"]]
    for label, row in rows.items():
        assert row["ci"] == metric_cis(labels, row["probs"], data["run"]["thresholds"])   # recomputed from the probs
        for point in ("balanced", "screening"):
            for rate in RATES:
                entry = row["ci"][point][rate]
                assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
        paired = row["vs_reference"]["auc_difference"]
        if label == data["reference"]:
            assert paired is None
        else:
            assert paired == paired_auc_difference(labels, reference["probs"], row["probs"])
            assert paired["value"] == pytest.approx(row["vs_reference"]["delta_auc"])
    assert "| row | threshold | sensitivity | specificity | precision | f1 |" in md
    assert "ΔAUC (95 % CI), p" in md and f"| tflite-int8 | {_auc_cell(rows['tflite-int8'])} |" in md


def _auc_cell(row: dict) -> str:
    auc = row["ci"]["auc"]
    return f"{auc['value']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})"


SHIFTS = ("invert", "gamma-1.6", "dither-1")


@pytest.fixture(scope="module")
def shift_bench(tmp_path_factory):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    tmp = tmp_path_factory.mktemp("bench-shifts")
    # brightness overlaps between the classes: the fixture model ranks them imperfectly, so the CIs have width
    run, data, out = make_run(tmp), make_images(tmp, levels=(140, 110), count=10, spread=45), tmp / "out"
    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "tensorflow_available", lambda: False)
    try:
        code = main(["bench", str(run), "--data", str(data), "--quick", "--threads", "1", "--formats",
                     "tflite-fp32,tflite-int8,onnx-fp32,onnx-int8", "--shifts", ",".join(SHIFTS), "--out", str(out)])
    finally:
        patch.undo()
    return code, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text(), out


def test_bench_shifts_scores_every_row_under_every_shift(shift_bench):
    from fracture_edge.edge_runtime.confidence import auc_ci

    code, data, _, _ = shift_bench
    assert code == 0
    suite = data["shifts"]
    assert suite["names"] == list(SHIFTS) and suite["probes"] == ["dither-1"]
    labels = np.asarray(data["run"]["labels"])
    accuracy = {r["label"]: r for r in data["accuracy"]}
    assert set(suite["rows"]) == {"tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"}
    assert suite["rows"]["onnx-int8"]["status"] == "failed" and suite["rows"]["onnx-int8"]["reason"]
    for label in ("tflite-fp32", "tflite-int8", "onnx-fp32"):
        row = suite["rows"][label]
        assert row["status"] == "ok" and set(row["shifts"]) == set(SHIFTS) and not row["failed_shifts"]
        assert row["clean"] == auc_ci(labels, accuracy[label]["probs"])   # the clean pass is the accuracy pass
        shifted = row["shifts"]
        # the fixture model calls bright images fractured: inverted, it ranks them backwards
        assert shifted["invert"]["auc"]["value"] < 0.5 < row["clean"]["value"]
        assert shifted["invert"]["delta_vs_clean"]["ci_high"] < 0
        assert row["worst"] == {"shift": "invert", "auc": shifted["invert"]["auc"]["value"]}   # the probe is left out
        assert row["mean_auc"] == pytest.approx(np.mean([shifted[n]["auc"]["value"] for n in ("invert", "gamma-1.6")]))
    fp32 = suite["rows"]["tflite-fp32"]["shifts"]
    assert fp32["invert"]["auc"] == suite["rows"]["onnx-fp32"]["shifts"]["invert"]["auc"]   # same shifted images


def test_bench_shifts_table_and_plot(shift_bench):
    _, data, md, out = shift_bench
    assert "## Acquisition shifts" in md
    assert "| shift | tflite-fp32 | tflite-int8 | onnx-fp32 |" in md
    invert = data["shifts"]["rows"]["tflite-int8"]["shifts"]["invert"]["auc"]
    assert f"{invert['value']:.3f} ({invert['ci_low']:.3f}-{invert['ci_high']:.3f})" in md
    assert "| dither-1 (probe) |" in md and "| **mean of 2** |" in md
    assert md.index("| **worst** |") < md.index("| dither-1 (probe) |")
    assert "shifts.png" in data["plots"] and (out / "shifts.png").stat().st_size > 0


def test_bench_rejects_an_unknown_shift(tmp_path, capsys):
    code = main(["bench", str(tmp_path), "--data", str(tmp_path), "--shifts", "sepia"])
    assert code != 0
    assert "unknown shift(s) sepia" in capsys.readouterr().err
