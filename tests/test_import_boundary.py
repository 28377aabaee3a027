"""The on-device runtime never loads TensorFlow or Keras: checked in a fresh interpreter (subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
