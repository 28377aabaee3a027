"""`--mixed-precision`: train in bfloat16 compute (float32 weights), ship a float32 model.

Under Keras' `mixed_bfloat16` policy every layer computes in bfloat16 and keeps float32 variables; the output
unit is float32 whatever the policy (train/model.py), so the sigmoid and the loss stay exact. The twin built
here does the caching and the training; the float32 model it was copied from gets its weights back at the end,
scores val/test and is what the run folder saves, so export, thresholds and the runtime never see bfloat16.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable

from ..edge_runtime.environment import cpu_info

log = logging.getLogger(__name__)

MIXED_POLICY = "mixed_bfloat16"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")   # CPU flags with native bfloat16 arithmetic


def cpu_has_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """True when the CPU flags (edge_runtime/environment.py reads them) name native bfloat16 arithmetic."""
    flags = set(cpu_info(cpuinfo_path)["flags"])
    return any(flag in flags for flag in BF16_FLAGS)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` for the layers built inside, restored after."""
    import keras

    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def mixed_twin(build: Callable[[], object], model):
    """`build()` under mixed_bfloat16, with every weight of the float32 `model` copied in (same architecture)."""
    if not cpu_has_bf16():
        log.warning("--mixed-precision: this CPU has no %s; bfloat16 is emulated and training will be slower, "
                    "not faster", " or ".join(BF16_FLAGS))
    with dtype_policy(MIXED_POLICY):
        twin = build()
    twin.set_weights(model.get_weights())
    log.info("training in %s (float32 weights); the saved model is float32", MIXED_POLICY)
    return twin
