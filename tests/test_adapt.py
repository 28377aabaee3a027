"""fracture-edge adapt (issue 15) without TensorFlow: the head fit, its schema, the adapted run, the thresholds."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "adapt_models"
FORMATS = ("tflite-fp32", "tflite-int8-dynamic", "tflite-int8", "onnx-fp32")   # the fixture run's artifacts


# ---- the head fit against an independent reference --------------------------------------------------------

def reference_fit(x: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """Plain IRLS on every standardised feature (no SVD, no line search): min 0.5|w|^2 + C sum s_i logloss_i."""
    mean, sd = x.mean(0), x.std(0)
    sd[sd < 1e-12] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / sd])
    s = np.where(y == 1, len(y) / (2.0 * y.sum()), len(y) / (2.0 * (len(y) - y.sum())))
    reg = np.eye(z.shape[1])
    reg[0, 0] = 0.0
    theta = np.zeros(z.shape[1])
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-z @ theta))
        grad = C * z.T @ (s * (p - y)) + reg @ theta
        hess = C * z.T @ (z * (s * p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-12:
            break
    w = theta[1:] / sd
    return w, float(theta[0] - mean @ w)


@pytest.mark.parametrize("n, d, C", [(80, 12, 1.0), (40, 200, 0.05), (60, 1024, 0.01), (30, 5, 100.0)])
def test_fit_matches_an_independent_irls_reference(n, d, C):
    from fracture_edge.edge_runtime.adapt.head import fit_logistic

    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d) + rng.normal(size=d)
    y = (x[:, 0] / x[:, 0].std() + rng.normal(size=n) > 0.8).astype(np.int64)
    x[:, -1] = 3.0                                     # a dead channel: constant
    head = fit_logistic(x, y, C)
    w, b = reference_fit(x, y, C)
    np.testing.assert_allclose(head.weights, w, rtol=1e-6, atol=1e-8)
    assert head.bias == pytest.approx(b, rel=1e-6, abs=1e-8)
    assert head.weights[-1] == 0.0


def test_class_weights_balance_the_classes():
    """With 10x more negatives, the unweighted intercept would sink; the weighted fit keeps the mean score central."""
    from fracture_edge.edge_runtime.adapt.head import fit_logistic

    rng = np.random.default_rng(3)
    x = rng.normal(size=(220, 3))
    y = np.r_[np.ones(20), np.zeros(200)].astype(np.int64)
    probs = fit_logistic(x, y, 1e-3).probabilities(x)
    assert abs(probs.mean() - 0.5) < 0.02


def test_folds_are_a_stratified_partition():
    from fracture_edge.edge_runtime.adapt.cv import folds_for

    y = np.r_[np.ones(11), np.zeros(37)].astype(np.int64)
    folds = folds_for(y, 5, 0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(48))
    assert all(y[f].sum() >= 2 and (1 - y[f]).sum() >= 7 for f in folds)


def test_cv_picks_strong_regularisation_for_noise_and_weak_for_signal():
    from fracture_edge.edge_runtime.adapt.cv import C_GRID, fit_head

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(30)].astype(np.int64)
    noise = rng.normal(size=(60, 300))
    signal = noise.copy()
    signal[:, :5] += 1.5 * y[:, None]
    assert fit_head(noise, y, 0.95).C < fit_head(signal, y, 0.95).C
    assert fit_head(noise, y, 0.95).C in C_GRID


# ---- the bundle schema of an adapted head ------------------------------------------------------------------

def adapted(bundle: dict, **head) -> dict:
    bundle = json.loads(json.dumps(bundle))
    bundle["adapted_head"] = {"kind": "logistic", "output": "features", "weights": [0.1, -0.2, 0.3, 0.0],
                              "bias": -0.5, **head}
    return bundle


@pytest.mark.parametrize("head, problem", [
    ({}, None),
    ({"weights": [0.1, 0.2]}, "adapted_head.weights has 2 values but output.extra.features has 4"),
    ({"weights": [0.1, float("nan"), 0.2, 0.3]}, "adapted_head.weights must all be finite numbers: 1 of 4"),
    ({"weights": [0.1, "x", 0.2, 0.3]}, "first: [1] = 'x'"),
    ({"bias": float("inf")}, "adapted_head.bias must be a finite number"),
    ({"bias": "0.5"}, "adapted_head.bias must be a finite number, got '0.5' (a string)"),
    ({"output": "logits"}, "adapted_head.output must be the name of an output declared in output.extra"),
    ({"output": "heatmap"}, "per-image shape [30, 30]; a head reads a vector"),
    ({"kind": "mlp"}, "adapted_head.kind must be one of logistic"),
    ({"weights": []}, "adapted_head.weights must be a non-empty list"),
    ({"provenance": "yesterday"}, "adapted_head.provenance must be an object"),
])
def test_bundle_schema_checks_the_adapted_head(head, problem):
    from fracture_edge.edge_runtime.bundle_schema import bundle_problems

    problems = bundle_problems(adapted(json.loads((FIXTURES / "bundle.json").read_text()), **head))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_a_head_missing_keys_is_one_line():
    from fracture_edge.edge_runtime.bundle_schema import bundle_problems

    bundle = json.loads((FIXTURES / "bundle.json").read_text())
    bundle["adapted_head"] = {"output": "features"}
    assert bundle_problems(bundle) == ["adapted_head: missing key(s) kind, weights, bias"]


# ---- the adapted run, end to end on the tiny fixture models -------------------------------------------------

def write_local_set(root: Path, fractured: int, not_fractured: int, seed: int = 0) -> Path:
    """class sub-folders of grey images; fractured ones brighter on average (the fixture's features see it)."""
    rng = np.random.default_rng(seed)
    for label, n, level in (("fractured", fractured, 150), ("not_fractured", not_fractured, 100)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            gray = rng.normal(level + rng.normal(0, 30), 40, (40 + i % 7, 36 + i % 5))
            Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).save(root / label / f"{label}_{i}.png")
    return root


@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory):
    """(base run copy, local set, new run, AdaptResult): one adapt on 30 + 36 images plus one broken file."""
    from fracture_edge.edge_runtime.adapt.stage import AdaptOptions, adapt_run

    root = tmp_path_factory.mktemp("adapt")
    base = root / "base"
    shutil.copytree(FIXTURES, base)
    local = write_local_set(root / "local", 30, 36)
    (local / "fractured" / "broken.png").write_bytes(b"not a png")
    result = adapt_run(AdaptOptions(run=base, data=local, out=root / "new", format="tflite-int8"))
    return base, local, root / "new", result


def test_the_new_run_links_every_artifact_with_its_hash(adapted_run):
    from fracture_edge.edge_runtime.bundle import file_sha256, load_bundle

    base, _, new, _ = adapted_run
    bundle = load_bundle(new)
    assert sorted(bundle["artifacts"]) == sorted(FORMATS)
    for record in bundle["artifacts"].values():
        link = new / record["file"]
        assert link.is_symlink() and link.resolve() == (base / record["file"]).resolve()
        assert record["sha256"] == file_sha256(base / record["file"])
    prov = bundle["adapted_head"]["provenance"]
    assert prov["counts"] == {"not_fractured": 36, "fractured": 30} and prov["format"] == "tflite-int8"
    assert prov["base_bundle_sha256"] == file_sha256(base / "bundle.json") and len(prov["local_set_sha256"]) == 64
    assert bundle["thresholds"]["screening"] <= bundle["thresholds"]["balanced"]
    assert (new / "adapt_report.md").is_file() and "## Adaptation to a new site" in (new / "model_card.md").read_text()


@pytest.mark.parametrize("fmt", FORMATS)
def test_adapted_probability_is_sigmoid_of_the_features_output(adapted_run, fmt):
    from fracture_edge.edge_runtime.classifier import Classifier

    base, _, new, _ = adapted_run
    head = json.loads((new / "bundle.json").read_text())["adapted_head"]
    pixels = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    base_probs, extra = Classifier(base, format=fmt).outputs(pixels, ("features",))
    expected = 1.0 / (1.0 + np.exp(-(extra["features"] @ np.array(head["weights"]) + head["bias"])))
    got = Classifier(new, format=fmt).predict_pixels(pixels)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert not np.allclose(got, base_probs, atol=1e-3)          # the head really replaced the base probability


def test_predict_cli_on_the_adapted_run_uses_the_head(adapted_run, capsys):
    from fracture_edge.edge_runtime.classifier import Classifier
    from fracture_edge.edge_runtime.cli import main
    from fracture_edge.edge_runtime.preprocessing import load_model_input

    base, local, new, _ = adapted_run
    images = sorted((local / "fractured").glob("fractured_*.png"))[:3]
    assert main(["predict", str(new), *map(str, images), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    clf = Classifier(base, format="tflite-int8")
    pixels = np.stack([load_model_input(p, clf.contract) for p in images])
    features = clf.outputs(pixels, ("features",))[1]["features"]
    head = json.loads((new / "bundle.json").read_text())["adapted_head"]
    expected = 1.0 / (1.0 + np.exp(-(features @ np.array(head["weights"]) + head["bias"])))
    assert [r["probability"] for r in rows] == pytest.approx(expected, abs=1e-6)
    assert all(r["threshold"] == json.loads((new / "bundle.json").read_text())["thresholds"]["balanced"] for r in rows)


def test_report_has_cis_baseline_base_model_and_the_skipped_file(adapted_run):
    _, _, new, result = adapted_run
    report = json.loads((new / "adapt_report.json").read_text())
    ev = report["evaluation"]
    for key in ("adapted", "baseline", "base_model"):
        auc = ev[key]["auc"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
        assert set(ev[key]["balanced"]) >= {"sensitivity", "specificity"}
    assert ev["beats_baseline"] == (ev["adapted_minus_baseline_auc"]["ci_low"] > 0)
    assert [Path(p).name for p, _ in report["skipped"]] == ["broken.png"]
    assert len(ev["out_of_fold"]["adapted"]) == 66 and set(report["seconds"]) >= {"features", "cross-validation"}
    assert result.warnings == tuple(report["warnings"])


def test_info_and_heatmap_on_the_adapted_run(adapted_run, capsys):
    from fracture_edge.edge_runtime.cli import main

    _, local, new, _ = adapted_run
    assert main(["info", str(new)]) == 0
    out = capsys.readouterr().out
    assert "local_cv: AUC" in out and f"model card: {new / 'model_card.md'}" in out
    image = next((local / "fractured").glob("fractured_*.png"))
    assert main(["predict", str(new), str(image), "--heatmaps", str(new.parent / "maps")]) == 1
    assert "no heatmaps with an adapted head" in capsys.readouterr().err


def test_a_modified_base_file_never_runs(adapted_run, tmp_path, capsys):
    from fracture_edge.edge_runtime.cli import main

    base, local, new, _ = adapted_run
    moved = tmp_path / "new"
    shutil.copytree(new, moved, symlinks=False)             # real files now, same hashes
    data = bytearray((moved / "model_fp32.onnx").read_bytes())
    data[-1] ^= 1
    (moved / "model_fp32.onnx").write_bytes(bytes(data))
    image = next((local / "fractured").glob("fractured_*.png"))
    assert main(["predict", str(moved), str(image), "--format", "onnx-fp32"]) == 1
    assert "does not match its bundle.json" in capsys.readouterr().err


def test_a_head_on_a_model_without_features_is_refused(adapted_run, tmp_path):
    from fracture_edge.edge_runtime.bundle import BundleError
    from fracture_edge.edge_runtime.classifier import Classifier

    bundle = {**json.loads((adapted_run[2] / "bundle.json").read_text()), "artifacts": {}}
    old = Path(__file__).parent / "fixtures" / "heatmap_models" / "model_fp32.tflite"
    with pytest.raises(BundleError, match="reads the 'features' output, which this model lacks"):
        Classifier(old, bundle=bundle)


@pytest.mark.parametrize("fractured, expect_exit, expect", [
    (9, 1, "needs at least 10 of each class (too few: fractured)"),
    (12, 0, "fewer than 25 fractured"),
])
def test_too_few_images_refused_and_few_warned(tmp_path, capsys, caplog, fractured, expect_exit, expect):
    from fracture_edge.edge_runtime.cli import main

    local = write_local_set(tmp_path / "local", fractured, 30)
    code = main(["adapt", str(FIXTURES), "--data", str(local), "--out", str(tmp_path / "new"), "--format", "onnx-fp32"])
    err = capsys.readouterr().err
    assert code == expect_exit and expect in (err if expect_exit else caplog.text)
    if expect_exit:
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "new").exists()


def test_a_split_csv_and_a_full_out_folder(tmp_path, capsys):
    from fracture_edge.edge_runtime.cli import main

    local = write_local_set(tmp_path / "local", 12, 14)
    rows = [f"{p.relative_to(local)},{p.parent.name},{'test' if i % 3 else 'train'}"
            for i, p in enumerate(sorted(local.rglob("*.png")))]
    (local / "site.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    out = tmp_path / "new"
    assert main(["adapt", str(FIXTURES), "--data", str(local / "site.csv"), "--out", str(out)]) == 0
    assert json.loads((out / "bundle.json").read_text())["adapted_head"]["provenance"]["counts"]["fractured"] == 12
    assert main(["adapt", str(FIXTURES), "--data", str(local / "site.csv"), "--out", str(out)]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["adapt", str(FIXTURES), "--data", str(local / "site.csv"), "--out", str(tmp_path / "n2"),
                 "--split", "train"]) == 1            # a third of 26 images: too few
    assert "at least 10" in capsys.readouterr().err


def test_adapt_runs_without_tensorflow(tmp_path):
    local = write_local_set(tmp_path / "local", 10, 10)
    code = (f"import sys, json\nfrom fracture_edge.edge_runtime.cli import main\n"
            f"assert main(['-q', 'adapt', {str(FIXTURES)!r}, '--data', {str(local)!r}, '--out', "
            f"{str(tmp_path / 'new')!r}]) == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
            "print('HEAVY=' + json.dumps(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=[]"


def test_eval_on_the_adapted_run_picks_an_artifact_and_warns_on_its_own_images(adapted_run, capsys, caplog):
    from fracture_edge.edge_runtime.cli import main

    _, local, new, _ = adapted_run
    with caplog.at_level("WARNING"):
        assert main(["eval", str(new), "--split", "all", "--json"]) == 0     # no model.keras: no --format needed
    result = json.loads(capsys.readouterr().out)
    assert result["format"] != "keras" and result["n"] == 66
    assert "fitted on" in caplog.text and "optimistic" in caplog.text


# ---- issue 25, item 9: contradictory labels, one --out for two runs, kills, the base model's own images ------

def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_an_image_under_both_labels_is_refused_naming_the_files(tmp_path, capsys, monkeypatch):
    from fracture_edge.edge_runtime.adapt import stage as adapt
    from fracture_edge.edge_runtime.cli import main

    local = write_local_set(tmp_path / "local", 15, 0)
    for path in sorted((local / "fractured").glob("*.png")):
        shutil.copy(path, local / "not_fractured" / path.name)            # the same 15 images under both classes
    monkeypatch.setattr(adapt, "load_local_set", lambda *a, **k: pytest.fail("features were read"))
    out = tmp_path / "new"
    code = main(["adapt", str(FIXTURES), "--data", str(local), "--out", str(out), "--format", "onnx-fp32"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "15 image(s) appear under both labels" in err and "give each image one label" in err
    assert str(local / "fractured" / "fractured_0.png") in err and str(local / "not_fractured" / "fractured_0.png") in err
    assert not out.exists() and hidden_leftovers(tmp_path) == []


def test_a_copy_under_the_same_label_is_a_warning(tmp_path, caplog):
    from fracture_edge.edge_runtime.adapt.stage import AdaptOptions, adapt_run

    local = write_local_set(tmp_path / "local", 12, 12)
    shutil.copy(local / "fractured" / "fractured_0.png", local / "fractured" / "copy.png")
    result = adapt_run(AdaptOptions(run=FIXTURES, data=local, out=tmp_path / "new", format="onnx-fp32"))
    assert any("listed more than once under the same label" in w for w in result.warnings)
    assert "copy.png" in caplog.text


def test_a_second_adapt_into_the_same_out_fails_at_once(tmp_path, capsys, monkeypatch):
    """The first adapt holds the claim (here: this process, through the same lock a running adapt holds)."""
    from fracture_edge.edge_runtime import atomic
    from fracture_edge.edge_runtime.adapt import stage as adapt
    from fracture_edge.edge_runtime.cli import main

    local = write_local_set(tmp_path / "local", 10, 10)
    out = tmp_path / "new"
    first = atomic.claim_folder(out, "fracture-edge adapt")
    monkeypatch.setattr(adapt, "read_local_samples", lambda *a: pytest.fail("the second adapt read the images"))
    try:
        code = main(["adapt", str(FIXTURES), "--data", str(local), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "PosixPath" not in err
        assert err.startswith(f"fracture-edge: error: {out}: another fracture-edge adapt is writing this folder")
    finally:
        first.release()
    assert not out.exists() and hidden_leftovers(tmp_path) == []


def test_two_adapts_racing_for_one_out_one_wins_the_other_fails_fast(tmp_path):
    local = write_local_set(tmp_path / "local", 10, 10)
    out = tmp_path / "new"
    argv = [sys.executable, "-m", "fracture_edge.edge_runtime", "-q", "adapt", str(FIXTURES), "--data", str(local),
            "--out", str(out), "--format", "onnx-fp32"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    loser = next(err for code, err in results if code == 1)
    assert codes == [0, 1] and loser.count("\n") == 1 and f"fracture-edge: error: {out}: " in loser
    assert (out / "bundle.json").is_file() and hidden_leftovers(tmp_path) == []


KILLED_CHILD = """
import sys, time
from pathlib import Path
from fracture_edge.edge_runtime.adapt import stage as adapt
from fracture_edge.edge_runtime.cli import main

def half_then_hang(opts, folder, *args, **kwargs):
    (folder / "bundle.json").write_text("{half")            # a half-made run folder
    Path(sys.argv[1]).write_text("ready")
    time.sleep(120)

adapt.fit_and_write = half_then_hang
main(sys.argv[2:])
"""


def test_a_killed_adapt_leaves_no_half_made_out_and_the_rerun_succeeds(tmp_path):
    import signal
    import time

    local = write_local_set(tmp_path / "local", 10, 10)
    out, ready = tmp_path / "new", tmp_path / "ready"
    argv = ["-q", "adapt", str(FIXTURES), "--data", str(local), "--out", str(out), "--format", "onnx-fp32"]
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(ready), *argv])
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), "the child never reached the write"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert not out.exists() and hidden_leftovers(tmp_path) == [".new.partial"]    # the kill's leftover, aside
    proc = subprocess.run([sys.executable, "-m", "fracture_edge.edge_runtime", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "bundle.json").read_text())["adapted_head"] and hidden_leftovers(tmp_path) == []


def test_leftovers_of_killed_claims_are_removed(tmp_path):
    from fracture_edge.edge_runtime import atomic

    out = tmp_path / "new"
    for name in (".new.claim-abc", ".new.stale-def"):
        (tmp_path / name / "new").mkdir(parents=True)
        (tmp_path / name / ".lock").write_text("")            # nobody holds these locks any more
    claim = atomic.claim_folder(out)
    try:
        assert hidden_leftovers(tmp_path) == [".new.partial"]
    finally:
        claim.release()
    assert hidden_leftovers(tmp_path) == []


def base_with_data(tmp_path: Path, source: Path) -> Path:
    base = Path(shutil.copytree(FIXTURES, tmp_path / "base"))
    bundle = json.loads((base / "bundle.json").read_text())
    bundle["data"] = {"source": str(source.resolve())}
    (base / "bundle.json").write_text(json.dumps(bundle))
    return base


def test_adapt_on_the_base_models_own_data_folder_warns(tmp_path, caplog):
    from fracture_edge.edge_runtime.adapt.stage import AdaptOptions, adapt_run

    local = write_local_set(tmp_path / "local", 10, 10)
    base = base_with_data(tmp_path, local)
    result = adapt_run(AdaptOptions(run=base, data=local, out=tmp_path / "new", format="onnx-fp32"))
    warning = next(w for w in result.warnings if "base model's own data" in w)
    assert f"is the base model's own data folder ({local.resolve()})" in warning and "optimistic" in warning
    assert warning in caplog.text
    assert warning in json.loads((tmp_path / "new" / "adapt_report.json").read_text())["warnings"]


def test_site_images_copied_from_the_base_training_set_are_found_by_content(tmp_path):
    from fracture_edge.edge_runtime.adapt.stage import AdaptOptions, adapt_run

    local = write_local_set(tmp_path / "local", 10, 10)
    training = tmp_path / "training"
    for label in ("fractured", "not_fractured"):
        (training / "train" / label).mkdir(parents=True)
        for path in sorted((local / label).glob("*.png"))[:3]:
            shutil.copy(path, training / "train" / label / f"renamed_{path.name}")
    write_local_set(training / "val", 2, 2, seed=9)              # other images, never copied
    base = base_with_data(tmp_path, training)
    result = adapt_run(AdaptOptions(run=base, data=local, out=tmp_path / "new", format="onnx-fp32"))
    assert any("6 of 20 site image(s) are copies of images in the base model's own data" in w and "6 train" in w
               for w in result.warnings), result.warnings


def test_no_overlap_warning_for_new_images_or_a_bundle_without_a_data_source(tmp_path):
    from fracture_edge.edge_runtime.adapt.stage import AdaptOptions, adapt_run

    local = write_local_set(tmp_path / "local", 10, 10)
    base = base_with_data(tmp_path, write_local_set(tmp_path / "elsewhere", 3, 3, seed=4))
    for run, out in ((base, "new"), (FIXTURES, "new2")):
        result = adapt_run(AdaptOptions(run=run, data=local, out=tmp_path / out, format="onnx-fp32"))
        assert not any("base model's own data" in w for w in result.warnings)
