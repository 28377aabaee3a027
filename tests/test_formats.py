"""Every row of the format table is consistent with the code that reads it: exporter, runtime, verdict, bench."""
from __future__ import annotations

from pathlib import Path

import pytest

from fracture_edge.edge_runtime.formats import (DEFAULT_EXPORT_FORMATS, DEPLOY_PREFERENCE, EDGE_BACKENDS,
                                                EXPORT_FORMATS, FORMATS, MIXED_SUFFIX, format_for_file)

ROWS = list(FORMATS.values())


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
    from fracture_edge.export.exporters import EXPORTER_KINDS, EXPORTERS

    assert fmt.edge == (fmt.name in EXPORT_FORMATS) == (fmt.name in EXPORTERS)
    if not fmt.edge:     # keras: the training reference, opened by Keras itself
        assert fmt.backend not in BACKENDS and fmt.default
        return
    assert EXPORTERS[fmt.name] is EXPORTER_KINDS[fmt.backend, fmt.quantization]
    for table in (BACKENDS, RUNTIME_IMPORTS, MAC_COUNTERS, BACKEND_SETTINGS):
        assert fmt.backend in table


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
    from fracture_edge.edge_runtime.artifacts import FORMAT_PREFERENCE

    for names in (DEPLOY_PREFERENCE, FORMAT_PREFERENCE, DEFAULT_EXPORT_FORMATS, TFLITE_ORDER + ONNX_ORDER):
        assert len(set(names)) == len(names) and all(FORMATS[name].edge for name in names)
    assert {FORMATS[name].backend for name in DEPLOY_PREFERENCE} == {"tflite"}   # what the Android app runs
    assert {FORMATS[name].backend for name in TFLITE_ORDER} == {"tflite"}
    assert {FORMATS[name].backend for name in ONNX_ORDER} == {"onnx"}


def test_backend_openers_are_the_edge_backends():
    from fracture_edge.edge_runtime.backends import BACKENDS, open_backend

    assert tuple(BACKENDS) == EDGE_BACKENDS
    with pytest.raises(ValueError, match="valid: tflite, onnx"):
        open_backend("model.keras", "keras")


@pytest.mark.parametrize("filename, backend", [("other.tflite", "tflite"), ("other.onnx", "onnx")])
def test_an_unlisted_artifact_file_is_a_compressed_custom_format(filename, backend):
    fmt = format_for_file(filename)
    assert (fmt.name, fmt.backend, fmt.edge, fmt.exact) == (f"{backend}-custom", backend, True, False)

