"""The on-device runtime never loads TensorFlow or Keras (checked in a fresh interpreter, subprocess), and the
stages import only the stages below them (read from the source with ast, nothing imported)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
HEAVY = ("tensorflow", "keras", "tf_keras", "tensorboard")

REPORT_HEAVY = f"""
import json, sys
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})
print('HEAVY=' + json.dumps(heavy))
"""

PREDICT = """
import numpy as np
import fracture_edge.edge_runtime.classifier, fracture_edge.edge_runtime.predict_cli, fracture_edge.edge_runtime.cli
from fracture_edge.edge_runtime.classifier import Classifier
clf = Classifier({model!r}, format={fmt!r})
assert clf.predict_pixels(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2,)
"""

CLI_HELP = """
import sys
from fracture_edge.edge_runtime.cli import main
for argv in (['--help'], ['predict', '--help'], ['info', '--help']):
    try:
        main(argv)
    except SystemExit:
        pass
"""


def loaded_heavy_modules(code: str) -> list[str]:
    """Run `code` in a fresh Python and return the TensorFlow/Keras modules it left in sys.modules."""
    proc = subprocess.run([sys.executable, "-c", code + REPORT_HEAVY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY="))
    return json.loads(line[len("HEAVY="):])


@pytest.mark.parametrize("model, fmt", [
    (FIXTURES, "tflite-int8"), (FIXTURES, "tflite-fp32"), (FIXTURES, "onnx-fp32"),
    (FIXTURES / "model_int8.tflite", None), (FIXTURES / "model_fp32.onnx", None),
])
def test_prediction_does_not_import_tensorflow(model, fmt):
    assert loaded_heavy_modules(PREDICT.format(model=str(model), fmt=fmt)) == []


def test_cli_help_does_not_import_tensorflow():
    assert loaded_heavy_modules(CLI_HELP) == []


def test_the_check_itself_sees_a_heavy_import():
    """Guards against a check that cannot fail: a module stub named keras must be reported."""
    code = "import sys, types; sys.modules['keras'] = types.ModuleType('keras')\n"
    assert loaded_heavy_modules(code) == ["keras"]


# ---------------------------------------------------------------- layering: the pipeline order, in imports

PACKAGE = "fracture_edge"
# stage folder -> the stages it must not import (edge_runtime < train < export < benchmarks < experiments)
FORBIDDEN = {
    "edge_runtime": ("train", "export", "benchmarks", "experiments"),
    "train": ("export", "benchmarks", "experiments"),
    "export": ("benchmarks", "experiments"),
    "benchmarks": ("experiments",),
}
# "file -> stage" imports allowed anyway, with the reason; each must still occur (a stale entry fails).
# Not checked at all: edge_runtime/cli.py's COMMAND_MODULES, the stages' CLI modules named as strings (the one
# `fracture-edge` command registers every stage's subcommands; importlib, not an import statement).
ALLOWED = {
    "train/demo.py -> export": "`fracture-edge demo` runs the whole pipeline (train, export, bench) and reads the "
                               "export's own verdict rule (export/outcome.py) to say which stage failed",
}


def imported_modules(source: str, path: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, nested ones too; `path` is the file's
    path from the repository root (e.g. train/evaluate.py), which places relative imports."""
    package = [PACKAGE, *Path(path).parent.parts]
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]   # a name may be a module
    return found


def layer_violations(source: str, path: str) -> list[tuple[str, int, str]]:
    """(path, line, module) of every import in `source` of a stage that `path`'s stage must not import."""
    forbidden = FORBIDDEN.get(Path(path).parts[0], ())
    return [(path, line, module) for line, module in imported_modules(source, path)
            if module.split(".")[0] == PACKAGE and module.split(".")[1:2] and module.split(".")[1] in forbidden]


def stage_of(module: str) -> str:
    return module.split(".")[1]


def test_each_stage_imports_only_the_stages_below_it():
    found = []
    for stage in FORBIDDEN:
        for file in sorted((ROOT / stage).rglob("*.py")):
            found += layer_violations(file.read_text(encoding="utf-8"), file.relative_to(ROOT).as_posix())
    excused = {f"{path} -> {stage_of(module)}" for path, _, module in found} & set(ALLOWED)
    assert [f"{path}:{line} imports {module}" for path, line, module in found
            if f"{path} -> {stage_of(module)}" not in excused] == []
    assert excused == set(ALLOWED), f"stale ALLOWED entries: {sorted(set(ALLOWED) - excused)}"


def test_the_layering_check_itself_sees_a_violation():
    """Guards against a check that cannot fail: relative, absolute, nested and `from .. import` forms are seen."""
    source = ("from ..edge_runtime import atomic\n"                # allowed: train may import edge_runtime
              "from ..export.verify import runtime_probs\n"
              "import fracture_edge.benchmarks.bench\n"
              "def later():\n"
              "    from .. import experiments\n")
    assert layer_violations(source, "train/evaluate.py") == [
        ("train/evaluate.py", 2, "fracture_edge.export.verify.runtime_probs"),
        ("train/evaluate.py", 3, "fracture_edge.benchmarks.bench"),
        ("train/evaluate.py", 5, "fracture_edge.experiments"),
    ]
    assert layer_violations("from ...train.trainer import train\n", "edge_runtime/adapt/stage.py") == [
        ("edge_runtime/adapt/stage.py", 1, "fracture_edge.train.trainer.train")]
    assert layer_violations("from ..bundle import load_bundle\nfrom . import head\n", "edge_runtime/adapt/stage.py") == []
    assert layer_violations("from ..train.keras_reference import keras_probs\n", "export/pipeline.py") == []
