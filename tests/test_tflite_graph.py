"""export/tflite_graph.py: flatbuffer strings and operator codes (the TensorFlow-free parts; the op-name table
is exercised by every export test that reads a converted model)."""
from types import SimpleNamespace

import pytest

from fracture_edge.export.tflite_graph import builtin_code, op_code, text


@pytest.mark.parametrize("raw, expected", [(b"conv/Relu", "conv/Relu"), ("dense", "dense"), (None, ""),
                                           (b"bad \xff byte", "bad \ufffd byte")])
def test_flatbuffer_strings_read_as_text(raw, expected):
    assert text(raw) == expected


@pytest.mark.parametrize("builtin, deprecated, expected", [(3, 3, 3), (0, 3, 3), (150, 127, 150)])
def test_the_builtin_code_is_the_larger_of_the_new_and_the_deprecated_field(builtin, deprecated, expected):
    code = SimpleNamespace(builtinCode=builtin, deprecatedBuiltinCode=deprecated)
    assert builtin_code(code) == expected
    model = SimpleNamespace(operatorCodes=[SimpleNamespace(builtinCode=0, deprecatedBuiltinCode=0), code])
    assert op_code(model, SimpleNamespace(opcodeIndex=1)) == expected
