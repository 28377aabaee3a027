"""--mixed-precision (train/precision.py): the CPU check, the scoped dtype policy and the bfloat16 twin."""
import numpy as np
import pytest

from fracture_edge.train import precision

XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni amx_tile\n"
OLD_X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16 i8mm\n"


def test_bfloat16_is_native_only_where_the_cpu_flags_say_so(tmp_path):
    def has_bf16(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return precision.cpu_has_bf16(str(path))

    assert has_bf16(XEON)
    assert has_bf16(XEON.replace("avx512_bf16", "amx_bf16"))
    assert not has_bf16(OLD_X86)
    assert not has_bf16(ARM)   # arm's bf16 flag is not a kernel TensorFlow's CPU build uses here
    assert not has_bf16("")


keras = pytest.importorskip("keras", reason="the twin needs the train extra (Keras)")


def _build():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out", dtype="float32")(hidden))


def test_the_policy_is_scoped_and_restored_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with precision.dtype_policy(precision.MIXED_POLICY):
            assert keras.config.dtype_policy().name == precision.MIXED_POLICY
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


def test_the_twin_computes_in_bfloat16_with_the_float32_weights(caplog, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda cpuinfo_path="": False)
    keras.utils.set_random_seed(0)
    model = _build()
    twin = precision.mixed_twin(_build, model)
    assert "slower, not faster" in caplog.text
    assert keras.config.dtype_policy().name == "float32"
    assert twin.get_layer("hidden").compute_dtype == "bfloat16"
    assert twin.get_layer("hidden").variable_dtype == "float32"
    assert twin.get_layer("out").compute_dtype == "float32"
    for mine, theirs in zip(model.get_weights(), twin.get_weights()):
        assert mine.dtype == theirs.dtype == np.float32 and np.array_equal(mine, theirs)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    exact, rounded = np.asarray(model(x)), np.asarray(twin(x))
    assert rounded.dtype == np.float32 and np.allclose(exact, rounded, atol=0.02)
