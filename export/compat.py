"""Can the legacy `tflite-runtime` 2.14 load a .tflite artifact? Decided from its operator versions.

tflite-runtime 2.14 needs numpy < 2, so it cannot be installed beside TensorFlow 2.21 and loaded
here. Instead each operator code (builtin op, version) of the artifact is compared with a
conservative table: the max_version of each op registered by BuiltinOpResolver in TensorFlow
Lite's kernels/register.cc of the 2.9 era (CAST max_version 4, added in 2.9.0). Op versions are
never removed, so 2.14 loads everything this table accepts (a lower bound). Verdicts:
- "yes": every op and version is in the table;
- "no": the converter's own `min_runtime_version` metadata is newer than 2.14.0;
- "unknown": some op/version is newer than the table but not known to need > 2.14 (not testable here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .tflite_graph import builtin_code, builtin_names, schema, text

TARGET = "tflite-runtime 2.14"
TARGET_VERSION = (2, 14, 0)

# builtin op name -> highest version registered in TFLite 2.9-era register.cc (lower bound for 2.14)
MAX_VERSION_LOWER_BOUND: dict[str, int] = {
    "ADD": 4, "AVERAGE_POOL_2D": 3, "CONCATENATION": 3, "CONV_2D": 6, "DEPTHWISE_CONV_2D": 6,
    "DEQUANTIZE": 5, "FULLY_CONNECTED": 9, "LOGISTIC": 3, "MAX_POOL_2D": 3, "MEAN": 3, "MUL": 5,
    "PAD": 4, "PADV2": 4, "QUANTIZE": 3, "RELU": 3, "RELU6": 3, "RESHAPE": 1, "SOFTMAX": 3,
    "SQUEEZE": 2, "STRIDED_SLICE": 6, "SUB": 5, "TRANSPOSE": 5, "SUM": 2, "CAST": 4, "SHAPE": 1,
    "RSQRT": 2, "SQRT": 1, "MAXIMUM": 4, "MINIMUM": 4, "TANH": 3, "HARD_SWISH": 1, "EXPAND_DIMS": 1,
    "PACK": 3, "GATHER": 5, "SLICE": 5, "SPLIT": 4, "SPLIT_V": 2, "DIV": 2, "BATCH_MATMUL": 4,
}


@dataclass(frozen=True)
class Compatibility:
    verdict: str                  # yes | no | unknown | n/a
    reason: str
    min_runtime_version: str | None = None
    ops: dict | None = None       # op name -> version used by the artifact

    def to_dict(self) -> dict:
        return asdict(self)


def tflite_operator_versions(path) -> tuple[dict[str, int], str | None]:
    """({op name: highest version used}, the converter's min_runtime_version metadata or None)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    ops: dict[str, int] = {}
    for code in model.operatorCodes:
        builtin = builtin_code(code)
        name = builtin_names().get(builtin, f"BUILTIN_{builtin}") if builtin != schema().BuiltinOperator.CUSTOM \
            else f"CUSTOM:{text(code.customCode)}"
        ops[name] = max(ops.get(name, 0), int(code.version))
    return ops, _metadata_text(model, "min_runtime_version")


def _metadata_text(model, key: str) -> str | None:
    for entry in model.metadata or ():
        if text(entry.name) == key:
            return bytes(model.buffers[entry.buffer].data).rstrip(b"\x00").decode(errors="replace")
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def judge(ops: dict[str, int], min_runtime: str | None) -> Compatibility:
    """Apply the rules in the module docstring to an artifact's op versions."""
    if min_runtime and _version_tuple(min_runtime) > TARGET_VERSION:
        return Compatibility("no", f"needs TFLite runtime >= {min_runtime}", min_runtime, ops)
    newer = sorted(f"{op} v{v}" for op, v in ops.items() if v > MAX_VERSION_LOWER_BOUND.get(op, 0))
    if newer:
        return Compatibility("unknown", f"not in the known-{TARGET} op table: {', '.join(newer)} "
                             "(not testable here)", min_runtime, ops)
    return Compatibility("yes", f"all {len(ops)} op versions are registered in {TARGET}", min_runtime, ops)


def check_artifact(path, backend: str) -> Compatibility:
    """Compatibility verdict of one artifact file."""
    if backend != "tflite":
        return Compatibility("n/a", f"{backend} artifact (runs with onnxruntime, not {TARGET})")
    ops, min_runtime = tflite_operator_versions(path)
    return judge(ops, min_runtime)
