"""Every row of the format table is consistent with the code that reads it: exporter, embedder, metadata reader,
runtime, verdict, bench, census, and the documented orders."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fracture_edge.edge_runtime.formats import (DEFAULT_EXPORT_FORMATS, DEPLOY_PREFERENCE, EDGE_BACKENDS,
                                                EXPORT_FORMATS, FORMAT_PREFERENCE, FORMATS, MIXED_SUFFIX,
                                                format_for_file)

ROOT = Path(__file__).resolve().parents[1]
ROWS = list(FORMATS.values())
# docs/fidelity-verdict.md, "Which artifact to deploy"; the README and the Android demo say the same
DOCUMENTED_DEPLOY_ORDER = ("tflite-int8", "tflite-int8-dynamic", "tflite-fp16", "tflite-fp32")


@pytest.mark.parametrize("fmt", ROWS, ids=lambda fmt: fmt.name)
def test_name_and_file_suffix_follow_the_backend(fmt):
    assert fmt.name == fmt.backend or fmt.name.startswith(f"{fmt.backend}-")
    assert Path(fmt.filename).suffix == f".{fmt.backend}"
    assert format_for_file(f"runs/x/{fmt.filename}") is fmt


@pytest.mark.parametrize("fmt", ROWS, ids=lambda fmt: fmt.name)
def test_edge_rows_have_an_exporter_and_a_runtime(fmt):
    from fracture_edge.benchmarks.macs import MAC_COUNTERS
    from fracture_edge.benchmarks.predictors import BACKEND_SETTINGS
    from fracture_edge.edge_runtime.backends import BACKENDS, RUNTIME_IMPORTS
    from fracture_edge.edge_runtime.embedded import METADATA_READERS
    from fracture_edge.export.embed import EMBEDDERS
    from fracture_edge.export.exporters import EXPORTER_KINDS, EXPORTERS
    from fracture_edge.export.int8_census import FLOAT_OP_READERS

    assert fmt.edge == (fmt.name in EXPORT_FORMATS) == (fmt.name in EXPORTERS)
    if not fmt.edge:     # keras: the training reference, opened by Keras itself
        assert fmt.backend not in BACKENDS and fmt.default
        return
    assert EXPORTERS[fmt.name] is EXPORTER_KINDS[fmt.backend, fmt.quantization]
    for table in (BACKENDS, RUNTIME_IMPORTS, MAC_COUNTERS, BACKEND_SETTINGS, EMBEDDERS, METADATA_READERS):
        assert fmt.backend in table
    assert fmt.precision != "int8" or fmt.backend in FLOAT_OP_READERS   # the int8 census


@pytest.mark.parametrize("fmt", ROWS, ids=lambda fmt: fmt.name)
def test_exact_rows_are_the_fp32_ones_and_the_rest_are_gated(fmt):
    from fracture_edge.benchmarks.gating import is_compressed
    from fracture_edge.export.gates import is_exact_format

    assert fmt.exact == (fmt.precision == "fp32") == is_exact_format(fmt.name)
    assert fmt.compressed == (fmt.precision in ("fp16", "int8")) == is_compressed(fmt.name)
    if fmt.edge:
        assert fmt.quantization.split("-")[0] == fmt.precision


@pytest.mark.parametrize("fmt", [f for f in ROWS if f.name.endswith(MIXED_SUFFIX)], ids=lambda fmt: fmt.name)
def test_mixed_rows_are_an_opt_in_variant_of_their_int8_row(fmt):
    from fracture_edge.export.exporters import EXPORTERS

    base = FORMATS[fmt.name.removesuffix(MIXED_SUFFIX)]
    assert (base.backend, base.precision, base.quantization) == (fmt.backend, "int8", fmt.quantization)
    assert base.default and not fmt.default and EXPORTERS[base.name] is EXPORTERS[fmt.name]


def test_preference_lists_name_edge_rows_once():
    from fracture_edge.benchmarks.macs import ONNX_ORDER, TFLITE_ORDER

    for names in (DEPLOY_PREFERENCE, FORMAT_PREFERENCE, DEFAULT_EXPORT_FORMATS, TFLITE_ORDER + ONNX_ORDER):
        assert len(set(names)) == len(names) and all(FORMATS[name].edge for name in names)
    assert {FORMATS[name].backend for name in DEPLOY_PREFERENCE} == {"tflite"}   # what the Android app runs
    assert {FORMATS[name].backend for name in TFLITE_ORDER} == {"tflite"}
    assert {FORMATS[name].backend for name in ONNX_ORDER} == {"onnx"}


def test_the_pick_and_deploy_orders_come_from_the_rows_in_the_documented_order():
    edge = [fmt for fmt in ROWS if fmt.edge]
    assert sorted(fmt.preference for fmt in edge) == list(range(1, len(edge) + 1))   # one place each, no gaps
    assert all(fmt.preference == 0 and not fmt.deployable for fmt in ROWS if not fmt.edge)
    assert DEPLOY_PREFERENCE == DOCUMENTED_DEPLOY_ORDER
    assert FORMAT_PREFERENCE[:len(DEPLOY_PREFERENCE)] == DEPLOY_PREFERENCE   # a run folder's pick starts the same
    assert set(FORMAT_PREFERENCE) == set(EXPORT_FORMATS)
    verdict_doc = (ROOT / "docs" / "fidelity-verdict.md").read_text(encoding="utf-8")
    section = verdict_doc.split("## Which artifact to deploy", 1)[1].split("\n## ", 1)[0]
    assert tuple(re.findall(r"`(tflite-[a-z0-9-]+)`", section)) == DEPLOY_PREFERENCE


def test_the_android_demo_picks_in_the_deploy_order():
    kotlin = (ROOT / "android_demo/app/src/main/kotlin/org/fractureedge/core/FractureBundle.kt").read_text(encoding="utf-8")
    listed = re.search(r"val APP_FORMATS = listOf\(([^)]*)\)", kotlin)
    assert listed, "FractureBundle.APP_FORMATS not found"
    assert tuple(re.findall(r'"([^"]+)"', listed.group(1))) == DEPLOY_PREFERENCE


def docs_format_table() -> list[tuple[str, str, str]]:
    """(format, file, what it is) of each row of the table under docs/fidelity.md's "## The formats"."""
    text = (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")
    section = text.split("\n## The formats\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1].strip("`"), cells[2]))
    return rows


def test_the_docs_format_table_matches_the_format_table():
    """docs/fidelity.md's table is written by hand (it says more than the rows' descriptions); it must list
    exactly the edge rows, in the table's order, with their files, the opt-in rows last and marked as such."""
    rows = docs_format_table()
    assert [(name, file) for name, file, _ in rows] == [(f.name, f.filename) for f in ROWS if f.edge]
    assert [name for name, _, what in rows if what.startswith("opt-in")] == \
        [f.name for f in ROWS if f.edge and not f.default]
    words = {4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    assert f"makes the first {words[len(DEFAULT_EXPORT_FORMATS)]}" in \
        (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")


def test_backend_openers_are_the_edge_backends():
    from fracture_edge.edge_runtime.backends import BACKENDS, open_backend

    assert tuple(BACKENDS) == EDGE_BACKENDS
    with pytest.raises(ValueError, match="valid: tflite, onnx"):
        open_backend("model.keras", "keras")


@pytest.mark.parametrize("filename, backend", [("other.tflite", "tflite"), ("other.onnx", "onnx")])
def test_an_unlisted_artifact_file_is_a_compressed_custom_format(filename, backend):
    fmt = format_for_file(filename)
    assert (fmt.name, fmt.backend, fmt.edge, fmt.exact) == (f"{backend}-custom", backend, True, False)

