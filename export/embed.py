"""Embed bundle.json inside an exported artifact, so that a lone .tflite/.onnx file still says what it is.

.tflite: a model metadata entry named "fracture_edge.bundle" pointing at a buffer holding the JSON (utf-8);
.onnx: the metadata_props key "fracture_edge.bundle". edge_runtime/embedded.py reads both without TensorFlow.
A file cannot carry its own hash, so the embedded copy drops the artifact's own sha256/bytes record;
the run folder's bundle.json keeps them (write it after embedding).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from fracture_edge.edge_runtime import atomic
from fracture_edge.edge_runtime.bundle import validate_bundle
from fracture_edge.edge_runtime.embedded import METADATA_KEY
from fracture_edge.edge_runtime.formats import format_for_file
from fracture_edge.export.tflite_graph import text


def embed_bundle(path: str | os.PathLike, bundle: dict) -> None:
    """Rewrite `path` atomically with `bundle` embedded (replacing an earlier embedded bundle)."""
    path = Path(path)
    validate_bundle(bundle, f"bundle for {path.name}")
    payload = json.dumps(_without_own_hash(bundle, path.name), sort_keys=False).encode("utf-8")
    try:
        embedder = EMBEDDERS[format_for_file(str(path)).backend]
    except (ValueError, KeyError):   # not a model file, or keras: no embedded bundle
        suffix = path.suffix.lower()
        raise ValueError(f"{path}: cannot embed a bundle in a {suffix or 'suffix-less'} file "
                         "(expected .tflite or .onnx)") from None
    atomic.write_bytes(path, embedder(path, payload))


def _without_own_hash(bundle: dict, filename: str) -> dict:
    """A deep copy of `bundle` whose record of `filename` has no sha256/bytes (they would be stale)."""
    bundle = copy.deepcopy(bundle)
    for record in bundle.get("artifacts", {}).values():
        if isinstance(record, dict) and record.get("file") == filename:
            record.pop("sha256", None)
            record.pop("bytes", None)
    return bundle


def _embed_tflite(path: Path, payload: bytes) -> bytes:
    """Add (or replace) the metadata entry with flatbuffer_utils (TensorFlow's own schema objects)."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    metadata = [m for m in (model.metadata or []) if text(m.name) != METADATA_KEY]
    for entry in model.metadata or []:
        if text(entry.name) == METADATA_KEY:
            model.buffers[entry.buffer].data = None  # orphan the old payload; an empty buffer is valid
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = metadata + [entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def _embed_onnx(path: Path, payload: bytes) -> bytes:
    """Add (or replace) the metadata_props entry."""
    import onnx

    model = onnx.load(str(path))
    props = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=METADATA_KEY, value=payload.decode("utf-8"))
    return model.SerializeToString()


# backend -> how a bundle is written into its artifact (edge_runtime/embedded.py's METADATA_READERS reads it);
# every edge backend of the format table has one (tests/test_formats.py)
EMBEDDERS = {"tflite": _embed_tflite, "onnx": _embed_onnx}
