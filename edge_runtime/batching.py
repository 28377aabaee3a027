"""Slices over an image array, a few images per runtime call (RUNTIME_CHUNK): what keeps scoring memory small."""
from __future__ import annotations

RUNTIME_CHUNK = 8   # images per runtime batch: onnxruntime's arena grows ~60 MB per 320-px image in a batch


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` covering range(n)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]
