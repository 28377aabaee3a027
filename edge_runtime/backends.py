"""Interpreters behind one small interface: run(pixels uint8 (N,S,S,3)) -> outputs float64 (N, K).

A model may have extra outputs beside the probability (a heatmap, ...): `output_specs` lists them all,
`output_details` is the probability's (the one output with a single value per image), and
`run_outputs(pixels, indices)` returns the chosen ones, each (N, values per image).

TFLite: LiteRT (ai_edge_litert) -> legacy tflite_runtime -> tensorflow.lite, the last only when TensorFlow
is installed anyway. ONNX: onnxruntime. Imported lazily; a missing runtime raises MissingExtraError
naming the extra. Inputs are quantized and outputs dequantized from the tensor details.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from typing import Iterator

import numpy as np

from .errors import FractureEdgeError, missing_extra

# (module holding Interpreter, distribution name for the version string)
TFLITE_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


class ModelLoadError(FractureEdgeError):
    """The model file could not be loaded by its runtime."""


@dataclass(frozen=True)
class TensorSpec:
    """What the backend knows about its input or output tensor."""

    name: str
    shape: tuple
    dtype: np.dtype
    scale: float = 0.0       # 0 = not quantized
    zero_point: int = 0


def quantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values -> the tensor's dtype, using its scale/zero point when it is quantized."""
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return values.astype(dtype)
    if spec.scale == 1.0 and spec.zero_point == 0:
        values = np.rint(values)  # raw pixels into a uint8 input: no float64 copy (5x faster at 224 px)
    elif spec.scale:
        values = np.round(values.astype(np.float64) / spec.scale + spec.zero_point)
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Tensor values -> real values (float64)."""
    values = values.astype(np.float64)
    if np.dtype(spec.dtype).kind != "f" and spec.scale:
        values = (values - spec.zero_point) * spec.scale
    return values


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def tflite_interpreter_class() -> tuple[type, str]:
    """(Interpreter class, 'runtime version') of the first TFLite runtime that is installed."""
    for module_name, dist in TFLITE_RUNTIMES:
        root = module_name.split(".")[0]
        if root == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
            continue  # never pull TensorFlow in unless it is installed anyway
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, f"{dist} {_version(dist)}"
    raise missing_extra("ai_edge_litert", "litert", "running a .tflite model")


XNNPACK_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextlib.contextmanager
def without_delegate_banner() -> Iterator[None]:
    """LiteRT's C++ core writes XNNPACK_BANNER to fd 2 when it builds its CPU delegate (on the first
    allocate_tensors), whatever -q or Python logging say. Capture fd 2 around that call and pass every
    other line through, so real errors still show."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        saved = None
    if saved is None:  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True) if line.strip() != XNNPACK_BANNER]
            if kept:
                os.write(2, b"".join(kept))


class TfliteBackend:
    """A .tflite model in a LiteRT / tflite_runtime / tf.lite Interpreter."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        interpreter_class, self.runtime = tflite_interpreter_class()
        try:
            with without_delegate_banner():
                self.interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path}: {self.runtime} cannot load this model ({exc})") from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if not inputs or not outputs:
            raise ModelLoadError(f"{path}: the model has no input or no output tensor")
        self._input, self._outputs = inputs[0], outputs
        self.input_details = self._spec(self._input)
        self.output_specs = tuple(self._spec(d) for d in outputs)
        self.probability_index = probability_index(self.output_specs)
        self.output_details = self.output_specs[self.probability_index]
        self._batch = int(self._input["shape"][0])

    @staticmethod
    def _spec(detail: dict) -> TensorSpec:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return TensorSpec(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]),
                          float(scale), int(zero_point))

    def _resize(self, n: int) -> bool:
        """Resize the input to batch n; False when the model does not allow it."""
        if n == self._batch:
            return True
        try:
            self.interpreter.resize_tensor_input(self._input["index"], [n, *self.input_details.shape[1:]])
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            self.interpreter.resize_tensor_input(self._input["index"], [self._batch, *self.input_details.shape[1:]])
            self.interpreter.allocate_tensors()
            return False
        self._batch = n
        return True

    def _invoke(self, pixels: np.ndarray, indices: tuple[int, ...]) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._input["index"], quantize(pixels, self.input_details))
        self.interpreter.invoke()
        return [dequantize(self.interpreter.get_tensor(self._outputs[i]["index"]), self.output_specs[i])
                .reshape(len(pixels), -1) for i in indices]

    def run_outputs(self, pixels: np.ndarray, indices: tuple[int, ...]) -> list[np.ndarray]:
        """The outputs at `indices` of output_specs, each float64 (N, values per image)."""
        if self._resize(len(pixels)):
            return self._invoke(pixels, indices)
        self._resize(1)
        return concatenate_each([self._invoke(pixels[i:i + 1], indices) for i in range(len(pixels))])

    def run(self, pixels: np.ndarray) -> np.ndarray:
        return self.run_outputs(pixels, (self.probability_index,))[0]


class OnnxBackend:
    """An .onnx model in an onnxruntime CPU session."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        ort = onnxruntime_module()
        self.runtime = f"onnxruntime {ort.__version__}"
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (non-OSError) exception types
            raise ModelLoadError(f"{path}: {self.runtime} cannot load this model ({exc})") from None
        if not self.session.get_inputs() or not self.session.get_outputs():
            raise ModelLoadError(f"{path}: the model has no input or no output")
        self.input_details = self._spec(self.session.get_inputs()[0])
        self.output_specs = tuple(self._spec(node) for node in self.session.get_outputs())
        self.probability_index = probability_index(self.output_specs)
        self.output_details = self.output_specs[self.probability_index]

    @staticmethod
    def _spec(node) -> TensorSpec:
        dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                 "tensor(float16)": np.float16}.get(node.type, np.float32)
        shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
        return TensorSpec(node.name, shape, np.dtype(dtype))

    def _invoke(self, pixels: np.ndarray, indices: tuple[int, ...]) -> list[np.ndarray]:
        feed = {self.input_details.name: quantize(pixels, self.input_details)}
        outs = self.session.run([self.output_specs[i].name for i in indices], feed)
        return [dequantize(np.asarray(out), self.output_specs[i]).reshape(len(pixels), -1)
                for i, out in zip(indices, outs)]

    def run_outputs(self, pixels: np.ndarray, indices: tuple[int, ...]) -> list[np.ndarray]:
        """The outputs at `indices` of output_specs, each float64 (N, values per image)."""
        if self.input_details.shape[0] in (-1, len(pixels)):
            return self._invoke(pixels, indices)
        return concatenate_each([self._invoke(pixels[i:i + 1], indices) for i in range(len(pixels))])

    def run(self, pixels: np.ndarray) -> np.ndarray:
        return self.run_outputs(pixels, (self.probability_index,))[0]


def probability_index(specs: tuple[TensorSpec, ...]) -> int:
    """Which output is the probability: the one with a single value per image (a model with one output: it).

    At a small input size a heatmap can also hold one value per image (a 1x1 map); the probability is
    then the one of lowest rank, (N, 1), beside the map's (N, 1, 1, 1)."""
    single = [i for i, spec in enumerate(specs) if int(np.prod(spec.shape[1:])) == 1]
    return min(single, key=lambda i: (len(specs[i].shape), i)) if single else 0


def concatenate_each(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-image results [[out_a, out_b], ...] -> [out_a of all images, out_b of all images]."""
    return [np.concatenate(column) for column in zip(*parts)]


def onnxruntime_module():
    """The onnxruntime module; a missing one raises MissingExtraError naming the extra."""
    try:
        import onnxruntime
    except ImportError:
        raise missing_extra("onnxruntime", "onnx", "running an .onnx model") from None
    return onnxruntime


# A Format's backend -> the class that opens its artifacts, and the import of its runtime library alone.
BACKENDS = {"tflite": TfliteBackend, "onnx": OnnxBackend}
RUNTIME_IMPORTS = {"tflite": tflite_interpreter_class, "onnx": onnxruntime_module}


def open_backend(path: str | os.PathLike, backend: str, num_threads: int | None = None):
    """A TfliteBackend or OnnxBackend for `path` ('tflite' | 'onnx')."""
    if backend not in BACKENDS:
        raise ValueError(f"no edge runtime for backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return BACKENDS[backend](path, num_threads)
