"""Reading TFLite flatbuffer objects (TensorFlow's schema classes): op names and codes, tensor names.

One place for what every module that edits or inspects a converted .tflite needs; TensorFlow is imported on
first use, so importing this module stays cheap.
"""
from __future__ import annotations

import functools


def schema():
    """TensorFlow's generated flatbuffer schema module (BuiltinOperator, TensorType, BufferT, ...)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


@functools.cache
def builtin_names() -> dict[int, str]:
    """{builtin operator code: its name, e.g. 'CONV_2D'}."""
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def builtin_code(operator_code) -> int:
    """An OperatorCode's builtin code (codes above 127 live only in builtinCode, older ones in the deprecated field)."""
    return max(operator_code.builtinCode, operator_code.deprecatedBuiltinCode)


def op_code(model, op) -> int:
    """The builtin code of an operator of `model`."""
    return builtin_code(model.operatorCodes[op.opcodeIndex])


def op_name(model, op) -> str:
    """'CONV_2D' etc. for an operator of `model`; 'BUILTIN_<code>' for a code this TensorFlow does not name."""
    code = op_code(model, op)
    return builtin_names().get(code, f"BUILTIN_{code}")


def text(name: bytes | str | None) -> str:
    """A flatbuffer string field (bytes, str or None) as str."""
    if name is None:
        return ""
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
