"""Read the bundle.json embedded in an artifact (.tflite metadata / .onnx metadata_props), without TensorFlow.

The .tflite reader walks just enough of the flatbuffer (Model.buffers and Model.metadata, schema.fbs)
to find the entry named METADATA_KEY; export/embed.py writes it.
"""
from __future__ import annotations

import mmap
import os
import stat
import struct
from pathlib import Path

from .bundle import BundleError, parse_bundle_text
from .formats import format_for_file

METADATA_KEY = "fracture_edge.bundle"

# Field indices of table Model in tensorflow/compiler/mlir/lite/schema/schema.fbs.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_METADATA_NAME, _METADATA_BUFFER = 0, 1


def read_embedded_bundle(path: str | os.PathLike) -> dict | None:
    """The bundle embedded in `path`, or None when there is none; BundleError when it is unreadable."""
    path = Path(path)
    backend = _backend(path)
    if backend not in METADATA_READERS:   # keras, or not a model file: nothing embedded
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe or device would block or never end
            raise BundleError(f"{path}: not a regular file (a folder, device or pipe), so not a model")
        raw = METADATA_READERS[backend](path, METADATA_KEY)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    except (struct.error, IndexError, ValueError, RuntimeError, RecursionError) as exc:
        raise BundleError(f"{path}: not a readable {backend} model, corrupt or truncated ({exc})") from None
    if raw is None:
        return None
    try:
        return parse_bundle_text(raw)
    except ValueError as exc:
        raise BundleError(f"{path}: embedded bundle is not valid JSON ({exc})") from None


def _backend(path: Path) -> str | None:
    """The backend of an artifact file by the format table (its file suffix), or None for a non-model file."""
    try:
        return format_for_file(str(path)).backend
    except ValueError:
        return None


def _tflite_file_metadata(path: Path, name: str) -> bytes | None:
    """Map the file instead of reading it: a model can be large, and only a few offsets are touched."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < 8:
            raise ValueError("file too short for a .tflite model")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            found = _tflite_metadata(buf, name)
            return None if found is None else bytes(found)


class _Table:
    """A flatbuffer table at `pos` in `buf` (little-endian, schema-less field access)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def field(self, index: int) -> int | None:
        """Absolute position of field `index`, or None when the field is absent."""
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return None
        offset = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self.field(index)
        return default if at is None else struct.unpack_from(fmt, self.buf, at)[0]

    def indirect(self, index: int) -> int | None:
        at = self.field(index)
        return None if at is None else at + struct.unpack_from("<I", self.buf, at)[0]

    def vector(self, index: int) -> tuple[int, int]:
        """(position of the first element, length) of a vector field; (0, 0) when absent."""
        at = self.indirect(index)
        return (0, 0) if at is None else (at + 4, struct.unpack_from("<I", self.buf, at)[0])

    def tables(self, index: int) -> list["_Table"]:
        start, length = self.vector(index)
        return [_Table(self.buf, start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0])
                for i in range(length)]

    def string(self, index: int) -> str | None:
        start, length = self.vector(index)
        return None if not start else self.buf[start:start + length].decode("utf-8", "replace")


def _tflite_metadata(buf: bytes, name: str) -> bytes | None:
    """The bytes of the metadata buffer called `name` in a .tflite flatbuffer, or None."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("missing the TFL3 file identifier")
    model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    for entry in model.tables(_MODEL_METADATA):
        if entry.string(_METADATA_NAME) != name:
            continue
        buffer = model.tables(_MODEL_BUFFERS)[entry.scalar(_METADATA_BUFFER, "<I")]
        offset = buffer.scalar(_BUFFER_OFFSET, "<Q")
        if offset > 1:  # models over 2 GB keep buffers after the flatbuffer
            size = buffer.scalar(_BUFFER_SIZE, "<Q")
            return buf[offset:offset + size]
        start, length = buffer.vector(_BUFFER_DATA)
        return buf[start:start + length]
    return None


def _onnx_metadata(path: Path, name: str) -> str | None:
    """metadata_props[name] of an .onnx file via the onnx package, else onnxruntime's custom_metadata_map."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError is not an OSError
            raise ValueError(_first_line(exc)) from None
        return next((p.value for p in model.metadata_props if p.key == name), None)
    try:
        import onnxruntime
    except ImportError:
        from .errors import missing_extra
        raise missing_extra("onnxruntime", "onnx", "reading an .onnx model") from None
    try:  # without the onnx package the runtime parses the file; its errors are not OSError/ValueError
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(_first_line(exc)) from None
    return session.get_modelmeta().custom_metadata_map.get(name)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


# backend -> the reader of the bundle embedded in an artifact (export/embed.py's EMBEDDERS writes it); every
# edge backend of the format table has one (tests/test_formats.py)
METADATA_READERS = {"tflite": _tflite_file_metadata, "onnx": _onnx_metadata}
