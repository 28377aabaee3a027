"""Property tests (hypothesis): generated bundles and generated file-system states never reach a traceback.

validate_bundle either accepts a bundle that every consumer can then use, or raises BundleError with one
line per problem. `predict` over a generated folder (images, broken files, pipes, links, a loop, odd
names, unreadable folders and files) exits 0/1/2/3, classifies every good image exactly once and names
every bad input exactly once. Examples are derandomized and bounded, so CI runs the same cases in seconds.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from conftest import simulated_unreadable  # noqa: E402
from fracture_edge.edge_runtime import bundle as B  # noqa: E402
from fracture_edge.edge_runtime.artifacts import artifact_record_for  # noqa: E402
from fracture_edge.edge_runtime.bundle_schema import bundle_problems  # noqa: E402
from fracture_edge.edge_runtime.cli import main  # noqa: E402
from fracture_edge.edge_runtime.info import artifact_checks, describe, InfoSource  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
FIXTURE_BUNDLE = json.loads((FIXTURES / "bundle.json").read_text())
EXIT_CODES = {0, 1, 2, 3}
COMMON = dict(derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEY_PATHS = ["", "schema_version", "labels", "labels.0", "positive_label", "thresholds", "thresholds.balanced",
             "thresholds.screening", "thresholds.default", "input", "input.size", "input.channels",
             "input.pixel_range", "input.fit", "input.layout", "output", "output.kind", "output.positive_index",
             "metrics", "metrics.test", "metrics.test.auc", "metrics.test.n", "metrics.test.balanced",
             "metrics.test.balanced.f1", "artifacts", "artifacts.tflite-int8", "artifacts.tflite-int8.file",
             "artifacts.tflite-int8.bytes", "artifacts.tflite-int8.sha256", "model"]
PLAUSIBLE = [0, 1, 2, -1, 0.5, 1.5, 32, 2 ** 70, "1", "", "fractured", "not_fractured", "balanced", "sigmoid",
             "stretch", [0, 255], ["fractured", "not_fractured"], ["fractured", "fractured"], {}, [], None, True,
             math.nan, math.inf]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() | st.text(max_size=8)
    | st.sampled_from(PLAUSIBLE),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6)
mutations = st.lists(st.tuples(st.sampled_from(KEY_PATHS), st.booleans(), json_values), max_size=3)


def mutate(bundle: dict, changes) -> object:
    """Apply (path, delete?, value) changes; a path through a non-container is left alone."""
    result: object = copy.deepcopy(bundle)
    for path, delete, value in changes:
        if not path:
            result = value
            continue
        *parents, last = path.split(".")
        target = result
        for key in parents:
            target = _child(target, key)
        if isinstance(target, dict):
            if delete:
                target.pop(last, None)
            else:
                target[last] = value
        elif isinstance(target, list) and last.isdigit() and int(last) < len(target):
            target[int(last)] = value
    return result


def _child(target, key):
    if isinstance(target, dict):
        return target.get(key)
    if isinstance(target, list) and key.isdigit() and int(key) < len(target):
        return target[int(key)]
    return None


@settings(max_examples=500, **COMMON)
@given(changes=mutations)
def test_validate_bundle_accepts_only_what_consumers_can_use(changes):
    bundle = mutate(FIXTURE_BUNDLE, changes)
    try:
        B.validate_bundle(bundle, "gen")
    except B.BundleError as exc:
        hypothesis.event("refused")
        lines = str(exc).splitlines()
        assert lines and all(line.strip() for line in lines) and lines[0].startswith("gen: ")
        return
    # accepted: everything info and predict read from it works
    hypothesis.event("accepted")
    B.input_contract(bundle)
    for choice in (None, "balanced", "screening"):
        name, value = B.resolve_threshold(bundle, choice)
        assert 0.0 <= value <= 1.0
    negative = [label for label in bundle["labels"] if label != bundle["positive_label"]]
    assert len(negative) == 1
    with tempfile.TemporaryDirectory() as folder:
        describe(bundle, "gen", artifact_checks(InfoSource(bundle, "gen", Path(folder))))


# --- predict over generated file-system states ------------------------------------------------------------

GOOD, BAD, IGNORED = "good", "bad", "ignored"
# kind -> what predict must make of it
ENTRY_KINDS = {
    "image": GOOD, "image-in-subfolder": GOOD, "link-to-image": GOOD, "empty": BAD, "text-as-png": BAD,
    "truncated-png": BAD, "pipe": BAD, "broken-link": BAD, "unreadable-file": BAD, "unreadable-folder": BAD,
    "link-to-ancestor": IGNORED, "hidden": IGNORED, "not-an-image-suffix": IGNORED,
}
NAMES = st.sampled_from(["a", "b c", "ü", "-dash", "new\nline", "tab\t", "x" * 120, "%s", "*", "[x]", "0",
                         "caf\udce9"])  # the last: a name that is not UTF-8 (surrogate-escaped bytes)
entries = st.lists(st.tuples(st.sampled_from(sorted(ENTRY_KINDS)), NAMES), min_size=1, max_size=8)


def make_entry(folder: Path, index: int, kind: str, stem: str) -> tuple[str | None, str | None]:
    """Create one entry; returns (path predict must report or None, a path to make unreadable or None)."""
    name = f"{index}-{stem}.png"
    path = folder / name
    if kind == "image":
        Image.new("L", (20, 24), 40 + 20 * index).save(path)
    elif kind == "image-in-subfolder":
        path = folder / f"sub{index}" / name
        path.parent.mkdir()
        Image.new("L", (20, 24), 200).save(path)
    elif kind == "link-to-image":
        target = folder / f"{index}-target.png"
        Image.new("L", (20, 24), 90).save(target)
        os.symlink(target, path)
        return str(path), str(target)  # both are good images: two paths, two rows
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text-as-png":
        path.write_text("not an image")
    elif kind == "truncated-png":
        buffer = io.BytesIO()
        Image.new("L", (20, 24), 10).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[:40])
    elif kind == "pipe":
        os.mkfifo(path)
    elif kind == "broken-link":
        os.symlink(folder / "nowhere.png", path)
    elif kind == "unreadable-file":
        Image.new("L", (20, 24), 10).save(path)
    elif kind == "unreadable-folder":
        path = folder / f"locked{index}"
        path.mkdir()
        Image.new("L", (20, 24), 10).save(path / "inside.png")
    elif kind == "link-to-ancestor":
        os.symlink("..", folder / f"up{index}")
        return None, None
    elif kind == "hidden":
        (folder / f".{name}").write_text("hidden")
        return None, None
    elif kind == "not-an-image-suffix":
        (folder / f"{index}-{stem}.txt").write_text("notes")
        return None, None
    return str(path), None


def refusable(bundle) -> bool:
    """Whether predict may refuse this run: the bundle breaks the schema, no longer vouches for the
    artifact (the integrity rule) or describes another input size than the model's."""
    if bundle_problems(bundle):
        return True
    record = artifact_record_for(bundle, "model_fp32.tflite") or {}
    return "sha256" not in record or bundle["input"]["size"] != FIXTURE_BUNDLE["input"]["size"]


@settings(max_examples=150, **COMMON)
@given(layout=entries, changes=st.one_of(st.just([]), mutations), as_glob=st.booleans())
def test_predict_survives_generated_bundles_and_file_systems(layout, changes, as_glob):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = Path(shutil.copytree(FIXTURES, tmp / "run"))
        bundle = mutate(FIXTURE_BUNDLE, changes)
        (run / "bundle.json").write_text(json.dumps(bundle))
        folder = tmp / "images"
        folder.mkdir()
        expected = {GOOD: [], BAD: []}
        denied, folders = [], []
        for index, (kind, stem) in enumerate(layout):
            path, extra = make_entry(folder, index, kind, stem)
            if path is None:
                continue
            expected[ENTRY_KINDS[kind]].append(path)
            if kind.startswith("unreadable"):
                denied.append(path)
                folders += [path] if kind == "unreadable-folder" else []
            elif extra is not None:
                expected[GOOD].append(extra)
        out, err = io.StringIO(), io.StringIO()
        with simulated_unreadable(*denied), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            argument = f"{folder}/**/*.png" if as_glob else str(folder)
            code = main(["predict", str(run), argument, "--recursive", "--json", "--format", "tflite-fp32"])
    assert code in EXIT_CODES
    hypothesis.event(f"exit {code}")
    if not expected[GOOD] and set(expected[BAD]) <= set(folders):  # no file at all: nothing to classify
        assert code == 1 and out.getvalue() == "" and "no images to classify" in err.getvalue()
        assert all(err.getvalue().count(f"{path}: ") == 1 for path in folders)
        return
    if code == 1:  # a bundle or model problem: one error, nothing classified
        assert out.getvalue() == "" and "fracture-edge: error: " in err.getvalue()
        assert refusable(bundle), err.getvalue()
        return
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    classified = sorted(r["path"] for r in rows if r["error"] is None)
    named = sorted(r["path"] for r in rows if r["error"] is not None)
    assert classified == sorted(expected[GOOD])
    assert named == sorted(expected[BAD])
    assert code == (2 if expected[BAD] else 0)
