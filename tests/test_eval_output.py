"""`eval RUN --data OTHER` (issue 25, item 4): a score on another dataset goes to its own file, named after that
dataset, and never replaces the run's home result (eval_<format>_<split>.json). TF-free: an exported fixture."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from PIL import Image

from fracture_edge.edge_runtime.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"


def dataset(root: Path, per_class: int) -> Path:
    for label, level in (("fractured", 220), ("not_fractured", 30)):
        (root / "test" / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("L", (40, 36), level + i).save(root / "test" / label / f"{label}{i}.png")
    return root


def run_with_home(tmp_path: Path) -> tuple[Path, Path]:
    home = dataset(tmp_path / "home", 2)
    run = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    bundle = json.loads((run / "bundle.json").read_text())
    bundle["data"] = {"source": str(home.resolve())}
    (run / "bundle.json").write_text(json.dumps(bundle))
    return run, home


def evaluate(capsys, run: Path, *extra) -> dict:
    assert main(["eval", str(run), "--format", "tflite-fp32", "--json", *map(str, extra)]) == 0
    return json.loads(capsys.readouterr().out)


def test_another_dataset_never_overwrites_the_home_result(tmp_path, capsys):
    run, home = run_with_home(tmp_path)
    result = evaluate(capsys, run)
    home_file = run / "eval_tflite-fp32_test.json"
    assert result["file"] == str(home_file) and result["home_data"] and result["n"] == 4
    before = home_file.read_bytes()
    other = evaluate(capsys, run, "--data", dataset(tmp_path / "site-b", 3))
    assert other["n"] == 6 and not other["home_data"]
    written = Path(other["file"])
    assert written.parent == run and written.name.startswith("eval_tflite-fp32_test_on-site-b-")
    assert json.loads(written.read_text())["n"] == 6
    assert home_file.read_bytes() == before                # the home result is untouched
    assert sorted(p.name for p in run.glob("eval_*.json")) == sorted([home_file.name, written.name])


def test_the_home_data_by_another_spelling_is_still_home(tmp_path, capsys, monkeypatch):
    run, home = run_with_home(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = evaluate(capsys, run, "--data", f"home{os.sep}.{os.sep}")
    assert result["home_data"] and Path(result["file"]).name == "eval_tflite-fp32_test.json"


def test_two_other_datasets_with_the_same_name_get_two_files(tmp_path, capsys):
    run, _ = run_with_home(tmp_path)
    first = evaluate(capsys, run, "--data", dataset(tmp_path / "a" / "site", 2))
    second = evaluate(capsys, run, "--data", dataset(tmp_path / "b" / "site", 3))
    assert first["file"] != second["file"]
    assert json.loads(Path(first["file"]).read_text())["n"] == 4 and json.loads(Path(second["file"]).read_text())["n"] == 6
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,split\n" + "".join(f"{p},{p.parent.name},test\n" for p in sorted((tmp_path / "a" / "site").rglob("*.png"))))
    assert Path(evaluate(capsys, run, "--data", csv)["file"]).name.startswith("eval_tflite-fp32_test_on-list-")


def test_a_run_without_a_recorded_data_source_names_every_result_by_its_data(tmp_path, capsys):
    run = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    result = evaluate(capsys, run, "--data", dataset(tmp_path / "mine", 2))
    assert not result["home_data"] and Path(result["file"]).name.startswith("eval_tflite-fp32_test_on-mine-")


# ---- eval --shifts --data OTHER (issue 25, round 3): the same rule for the shift suite --------------------------

SHIFTS = "invert,hflip"


def shifts(capsys, run: Path, *extra) -> dict:
    assert main(["eval", str(run), "--format", "tflite-fp32", "--shifts", SHIFTS, "--json", *map(str, extra)]) == 0
    return json.loads(capsys.readouterr().out)


def test_shifts_on_another_dataset_never_overwrite_the_home_suite(tmp_path, capsys):
    run, _ = run_with_home(tmp_path)
    result = shifts(capsys, run)
    home_files = [run / f"shifts_tflite-fp32_test.{suffix}" for suffix in ("json", "md", "png")]
    assert result["home_data"] and result["file"] == str(home_files[0]) and result["n"] == 4
    before = [p.read_bytes() for p in home_files]
    other = shifts(capsys, run, "--data", dataset(tmp_path / "site.b", 3))
    assert other["n"] == 6 and not other["home_data"]
    written = Path(other["file"])
    assert written.parent == run and written.name.startswith("shifts_tflite-fp32_test_on-site.b-")
    assert written.suffix == ".json" and json.loads(written.read_text())["n"] == 6
    stem = written.name[:-len(".json")]
    for suffix in ("md", "png"):
        assert (run / f"{stem}.{suffix}").is_file()
    assert str(tmp_path / "site.b") in (run / f"{stem}.md").read_text().splitlines()[0]
    assert [p.read_bytes() for p in home_files] == before             # the home suite is untouched
    card = (run / "model_card.md").read_text()
    assert "From `shifts_tflite-fp32_test.json` (tflite-fp32, n = 4)" in card   # the card shows the home one


def test_shifts_of_a_run_without_a_home_are_named_by_their_data(tmp_path, capsys):
    run = Path(shutil.copytree(FIXTURES, tmp_path / "run"))
    result = shifts(capsys, run, "--data", dataset(tmp_path / "mine", 2))
    assert not result["home_data"] and Path(result["file"]).name.startswith("shifts_tflite-fp32_test_on-mine-")
    assert not list(run.glob("shifts_*_test.json"))            # nothing the model card would show as home
