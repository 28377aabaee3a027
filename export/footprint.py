"""Time and memory of each export stage: RSS at its end, its own peak, and the process's peak so far.

A stage's peak is sampled (every SAMPLE_S by a daemon thread reading /proc/self/statm, plus its start
and end), so a spike shorter than that can be missed; the process's peak is the kernel's high-water
mark of this process's memory (VmHWM), never missed and never reset. The high-water mark is
deliberately not reset per stage (/proc/self/clear_refs would do it) because that would also lower what
`/usr/bin/time -v` reports for the whole command.

VmHWM rather than getrusage's ru_maxrss (why: edge_runtime/environment.py, where both readers live, shared
with train and the benchmarks).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterator

from ..edge_runtime.environment import peak_rss_mb, rss_mb

log = logging.getLogger(__name__)

SAMPLE_S = 0.05


def release_memory() -> None:
    """Collect garbage cycles now and hand freed heap pages back to the OS (glibc's malloc_trim, where present).

    tf2onnx leaves 0.5-1.3 GB of cyclic garbage per conversion (measured on DenseNet121 at 320 px): left
    to the collector's schedule it was still held when onnxruntime's calibration added its own ~0.9 GB.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


@dataclass(frozen=True)
class StageRecord:
    """One measured stage; `within` names the enclosing stage ('' at the top level)."""

    name: str
    within: str
    seconds: float
    rss_start_mb: float | None
    rss_end_mb: float | None
    stage_peak_mb: float | None      # highest RSS sampled while the stage ran
    process_peak_mb: float           # the process's peak RSS when the stage ended

    def to_dict(self) -> dict:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class StageMeter:
    """Context-manager stages, nestable; one sampling thread while any stage is open."""

    def __init__(self, sample_s: float = SAMPLE_S):
        self.records: list[StageRecord] = []
        self._sample_s = sample_s
        self._open: list[list] = []          # [name, max rss] of the stages now running, outermost first
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start_rss, started = rss_mb(), time.perf_counter()
        entry = [name, start_rss]
        with self._lock:
            within = self._open[-1][0] if self._open else ""
            self._open.append(entry)
            if len(self._open) == 1:
                self._start_sampler()
        try:
            yield
        finally:
            end_rss = rss_mb()
            with self._lock:
                self._open.remove(entry)
                if not self._open:
                    self._stop_sampler()
            peak = max((v for v in (entry[1], end_rss) if v is not None), default=None)
            record = StageRecord(name, within, time.perf_counter() - started, start_rss, end_rss, peak,
                                 peak_rss_mb())
            self.records.append(record)
            log.info("%s: %.0f s, RSS %s MB (stage peak %s MB, process peak %.0f MB)", name, record.seconds,
                     _fmt(end_rss), _fmt(peak), record.process_peak_mb)

    def _start_sampler(self) -> None:
        if rss_mb() is None:
            return
        self._stop = threading.Event()
        threading.Thread(target=self._sample, args=(self._stop,), name="rss-sampler", daemon=True).start()

    def _stop_sampler(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def _sample(self, stop: threading.Event) -> None:
        while not stop.wait(self._sample_s):
            now = rss_mb()
            with self._lock:
                for entry in self._open:
                    if now is not None and (entry[1] is None or now > entry[1]):
                        entry[1] = now

    def to_dict(self) -> dict:
        """For the export report: every stage in the order it ended, and the process's peak."""
        return {"peak_rss_mb": round(peak_rss_mb(), 1), "sampled_every_s": self._sample_s,
                "stages": [r.to_dict() for r in self.records]}


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
