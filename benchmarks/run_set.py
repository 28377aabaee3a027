"""The run folders of one `fracture-edge bench RUN RUN ...`, checked before any measuring: each exists and has a
readable bundle.json, no two are the same folder, and each gets a name of its own (its folder under OUT)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..edge_runtime.bundle import load_bundle
from ..edge_runtime.errors import FractureEdgeError

COMPARE_DIR = "bench-compare"   # the default OUT of several runs, beside the first run


@dataclass(frozen=True)
class RunPlan:
    """One run folder of the set, as its bundle.json describes it."""
    name: str                 # unique within the set: its bench goes to OUT/<name>/
    path: str                 # as given on the command line
    model: str                # bundle "model": "DenseNet121", "MobileNetV2-0.35"
    backbone: str | None      # bundle "backbone" (older bundles have none)
    input_px: int

    @property
    def title(self) -> str:
        """The model column of the compare table: 'fracatlas-320 (DenseNet121, 320 px)'."""
        return f"{self.name} ({self.model}, {self.input_px} px)"

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(Path(self.path).resolve()), "model": self.model,
                "backbone": self.backbone, "input_px": self.input_px}


def plan_runs(paths: list[str]) -> list[RunPlan]:
    """A RunPlan per run folder; every problem found (not only the first) is one line of the error raised."""
    problems, bundles, seen = [], {}, {}
    for path in paths:
        where = os.path.realpath(path)
        if where in seen:
            problems.append(f"{path}: the same run folder as {seen[where]} (give each run once)")
            continue
        seen[where] = path
        if not os.path.isdir(path):
            problems.append(f"{path}: {'not a folder' if os.path.exists(path) else 'no such run folder'}")
            continue
        try:
            bundles[path] = load_bundle(path)
        except FractureEdgeError as exc:
            problems.append(str(exc))
    if problems:   # one line each, every one prefixed as the CLI prefixes the first
        raise FractureEdgeError("\nfracture-edge: error: ".join(problems))
    names = unique_names([Path(os.path.abspath(p)) for p in paths])
    return [RunPlan(name, path, str(bundles[path].get("model") or "model"), bundles[path].get("backbone"),
                    int(bundles[path]["input"]["size"])) for name, path in zip(names, paths)]


def unique_names(folders: list[Path]) -> list[str]:
    """Folder names, with the parent's name in front where two are equal (a/run, b/run -> a-run, b-run), and
    a counter where that is not enough."""
    names = [f.name or "run" for f in folders]
    names = [f"{f.parent.name}-{n}" if names.count(n) > 1 and f.parent.name else n for f, n in zip(folders, names)]
    out: list[str] = []
    for n in names:
        candidate, k = n, 2
        while candidate in out:
            candidate, k = f"{n}-{k}", k + 1
        out.append(candidate)
    return out


def default_out(first_run: str) -> str:
    """OUT when several runs are benched without --out: bench-compare/ beside the first run."""
    return str(Path(os.path.abspath(first_run)).parent / COMPARE_DIR)
