"""Measure what a device install costs: a fresh venv with `pip install ".[litert]"`, its size, and cold start.

    .venv/bin/python scripts/measure_footprint.py [--model MODEL_OR_RUN] [--extra litert] [--runs 5]

Creates a venv in a temporary folder, installs the repo (not editable) with the extra, reports the venv
size in MB, checks that tensorflow/keras are NOT importable there, and times cold starts: a new Python
process that imports the runtime, loads the model (default: the fixture int8 model) and classifies one
image. Prints JSON. Needs network access to the package registry (or its local mirror).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "tests" / "fixtures" / "models" / "model_int8.tflite"

COLD_START = """
import time, json
t0 = time.perf_counter()
from fracture_edge.edge_runtime.classifier import Classifier
t1 = time.perf_counter()
clf = Classifier({model!r}, num_threads={threads!r})
t2 = time.perf_counter()
pred = clf.predict_file({image!r})
t3 = time.perf_counter()
import sys
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "runtime": clf.runtime,
                  "format": clf.format.name, "probability": pred.probability, "heavy_modules": heavy}}))
"""


def folder_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return round(total / 1e6, 1)


def site_packages(env: Path) -> Path:
    return next((env / "lib").glob("python*/site-packages"))


def largest_packages(site: Path, top: int = 6) -> dict[str, float]:
    sizes = {p.name: folder_mb(p) for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:top])


def install(env: Path, extra: str) -> float:
    """Create the venv and pip install the repo with `extra`; returns seconds."""
    start = time.perf_counter()
    venv.create(env, with_pip=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{ROOT}[{extra}]"]
    subprocess.run(pip, check=True)
    return time.perf_counter() - start


def importable(python: Path, modules: tuple[str, ...]) -> dict[str, bool]:
    code = "import importlib.util, json, sys; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    out = subprocess.run([str(python), "-c", code, *modules], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def cold_starts(python: Path, model: Path, image: Path, runs: int, threads: int | None) -> dict:
    """Time `runs` fresh processes: wall time from spawn to exit, plus the phases measured inside."""
    code = COLD_START.format(model=str(model), image=str(image), threads=threads)
    walls, inner = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"cold start failed:\n{proc.stderr[-2000:]}")
        inner.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    phases = {k[:-2] + "_ms": round(statistics.median(r[k] for r in inner) * 1000, 1)
              for k in ("import_s", "load_s", "first_predict_s")}
    return {"runs": runs, "wall_ms_median": round(statistics.median(walls) * 1000, 1),
            "wall_ms_first": round(walls[0] * 1000, 1), "phases_ms_median": phases,
            "runtime": inner[0]["runtime"], "format": inner[0]["format"],
            "tensorflow_or_keras_loaded": inner[0]["heavy_modules"]}


def write_test_image(path: Path) -> Path:
    """A 512x512 gray radiograph-sized stand-in (decode + resize cost is part of the first prediction)."""
    from PIL import Image

    Image.radial_gradient("L").resize((512, 512)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="run folder or artifact (default: fixture int8)")
    parser.add_argument("--extra", default="litert", help="extra to install (litert | onnx)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fracture-edge-footprint-") as tmp:
        env = Path(tmp) / "venv"
        seconds = install(env, args.extra)
        python = env / "bin" / "python"
        site = site_packages(env)
        report = {
            "extra": args.extra, "python": sys.version.split()[0], "install_s": round(seconds, 1),
            "venv_mb": folder_mb(env), "site_packages_mb": folder_mb(site),
            "largest_packages_mb": largest_packages(site),
            "importable": importable(python, ("tensorflow", "keras", "ai_edge_litert", "onnxruntime", "numpy", "PIL")),
            "model": str(args.model.resolve()), "model_mb": round(folder_mb(args.model) if args.model.is_dir()
                                                                   else args.model.stat().st_size / 1e6, 3),
            "cold_start": cold_starts(python, args.model.resolve(), write_test_image(Path(tmp) / "x.png"),
                                      args.runs, args.threads),
        }
    report["ok"] = not report["importable"]["tensorflow"] and not report["importable"]["keras"]
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    main()
