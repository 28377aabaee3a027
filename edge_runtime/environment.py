"""What a measurement ran on and what memory it took: this process's RSS now and at its peak; the device's
CPU model and flags, cores, memory, OS, Python and library versions. Standard library only (no TensorFlow),
so every stage (train, export, benchmarks, and a benchmark worker in a runtime-only venv) reads them here.

The peak is the kernel's high-water mark of this process's memory (VmHWM), never missed and never reset,
rather than getrusage's ru_maxrss: a child process's ru_maxrss starts at its parent's peak (the kernel
carries the pre-exec high-water mark over), so every `fracture-edge bench` worker reported the bench
process's 389.6 MB.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import resource
import sys
from importlib import metadata
from pathlib import Path

MB = 1024.0 * 1024.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# Distribution names whose versions the report records (absent ones are reported as null).
LIBRARIES = ("fracture-edge", "numpy", "pillow", "ai-edge-litert", "tflite-runtime", "onnxruntime",
             "onnx", "tensorflow", "keras", "tf2onnx", "matplotlib")
# CPU flags that decide which kernels run fast; the full list is kept too.
KEY_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8",
             "asimd", "asimddp", "fphp", "i8mm", "neon")


def rss_mb() -> float | None:
    """Resident set size now, MiB (None where /proc is missing: then only the peak is known)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE / MB
    except (OSError, ValueError, IndexError):
        return None


_highest_peak = (0, 0.0)   # (pid, the largest peak read so far in that process): a forked child starts afresh


def peak_rss_mb() -> float:
    """This process's own peak RSS so far, MiB: VmHWM on Linux, else getrusage (macOS reports bytes). Never
    lower than an earlier reading: Linux syncs per-thread RSS counters lazily, so VmHWM can read 0.1 MB lower."""
    global _highest_peak
    pid, earlier = _highest_peak
    peak = max(earlier, _read_peak_rss_mb()) if pid == os.getpid() else _read_peak_rss_mb()
    _highest_peak = (os.getpid(), peak)
    return peak


def _read_peak_rss_mb() -> float:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MB if sys.platform == "darwin" else 1024.0)


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict:
    """Installed version of each distribution, or None."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def module_versions(modules: tuple[str, ...]) -> dict:
    """The version record a stage writes into bundle.json: fracture_edge's version, then each module's
    __version__ in the order given (None when it is not installed), then Python's. Train's `versions` and
    export's `environment` are this record; bench's fuller one is describe_environment."""
    from . import __version__

    record: dict = {"fracture_edge": __version__}
    for name in modules:
        try:
            record[name] = getattr(importlib.import_module(name), "__version__", None)
        except ImportError:
            record[name] = None
    return {**record, "python": platform.python_version()}


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """CPU model name and feature flags from /proc/cpuinfo (x86 'model name'/'flags', ARM 'Model'/'Features')."""
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    names = [fields.get("model name"), fields.get("model"), fields.get("hardware"), fields.get("cpu part"),
             platform.processor(), platform.machine()]
    model = next((n for n in names if n and not n.isdigit()), "unknown CPU")
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return {"model": model, "key_flags": [f for f in KEY_FLAGS if f in flags], "flags": flags}


def memory_total_mb(meminfo_path: str = "/proc/meminfo") -> float | None:
    try:
        for line in Path(meminfo_path).read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware), falling back to os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def describe_environment() -> dict:
    """Everything a reader needs to know which machine produced a set of numbers."""
    return {
        "hostname": platform.node(),
        "cpu": cpu_info(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable_cores(),
        "memory_mb": memory_total_mb(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "libraries": library_versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def device_line(env: dict) -> str:
    """One line naming the device, for the report's header."""
    cpu = env.get("cpu", {})
    flags = ", ".join(cpu.get("key_flags", [])) or "no listed SIMD flags"
    memory = f"{env['memory_mb'] / 1024:.1f} GiB RAM" if env.get("memory_mb") else "RAM unknown"
    return (f"{cpu.get('model', 'unknown CPU')} ({env.get('cores_usable')} usable of "
            f"{env.get('cores_logical')} logical cores; {flags}), {memory}, "
            f"{env.get('os')}, Python {env.get('python')}")
