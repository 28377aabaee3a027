"""Benchmark options: one frozen dataclass, defaults < CLI flags; --quick shrinks the work for smoke runs."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace

from ..edge_runtime.formats import DEFAULT_EXPORT_FORMATS, FORMATS
from ..edge_runtime.shifts import shift_names

BENCH_FORMATS = ("keras", *DEFAULT_EXPORT_FORMATS)   # the rows of a plain bench: what a plain export makes

MAX_THREADS = MAX_BATCH = 256   # as predict: more only exhausts the machine
WORKER_RUNTIMES = ("tflite-runtime", "ai-edge-litert")   # TFLite runtimes a --worker-python row may pin
QUICK = {"warmup": 2, "runs": 10, "sample": 24, "budget_s": 5.0}


def default_threads() -> tuple[int, ...]:
    """The usable core count (the setting the latency targets are measured at on a 2-core machine)."""
    try:
        return (len(os.sched_getaffinity(0)),)
    except (AttributeError, OSError):
        return (os.cpu_count() or 1,)


@dataclass(frozen=True)
class BenchOptions:
    run: str                                   # run folder with bundle.json and the artifacts
    data: str                                  # dataset folder or split CSV (real images)
    split: str = "test"
    formats: tuple[str, ...] = BENCH_FORMATS   # rows to measure (keras needs TensorFlow)
    threads: tuple[int, ...] = field(default_factory=default_threads)
    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    runs: int = 50
    sample: int = 0                            # 0 = every image of the split; >0 = a stratified sample
    budget_s: float = 60.0                     # per measurement: stop timing after this (>= 5 runs kept)
    job_timeout_s: float = 900.0               # a worker subprocess running longer is killed
    out: str | None = None                     # default RUN/bench/
    gate: bool = False
    quick: bool = False
    plots: bool = True
    include_rejected: bool = False             # also measure artifacts export quarantined in RUN/rejected/
    allow_unverified: bool = False             # run artifacts no bundle.json / export report records (the integrity rule)
    worker_pythons: tuple[tuple[str, str], ...] = ()  # (TFLite runtime, python): extra rows run under that Python
    shifts: tuple[str, ...] = ()               # acquisition shifts to score each row under (bench --shifts; slow)
    seed: int = 0                              # seed of the random shifts and of the bootstrap CIs

    def __post_init__(self) -> None:
        for name in self.formats:
            if name not in FORMATS:
                raise ValueError(f"unknown format {name!r}; valid formats: {', '.join(FORMATS)}")
        if not self.threads or min(self.threads) < 1 or max(self.threads) > MAX_THREADS:
            raise ValueError(f"--threads must be integers from 1 to {MAX_THREADS}, got {self.threads}")
        if not self.batches or min(self.batches) < 1 or max(self.batches) > MAX_BATCH:
            raise ValueError(f"--batch must be integers from 1 to {MAX_BATCH}, got {self.batches}")
        if self.warmup < 0 or self.runs < 1 or self.sample < 0 or self.budget_s <= 0:
            raise ValueError("--warmup and --sample must be >= 0, --runs >= 1 and the budget positive")
        unknown = [name for name in self.shifts if name not in shift_names()]
        if unknown:
            raise ValueError(f"--shifts: unknown shift(s) {', '.join(unknown)}; valid: {', '.join(shift_names())}")
        for runtime, python in self.worker_pythons:
            if runtime not in WORKER_RUNTIMES:
                raise ValueError(f"--worker-python: unknown runtime {runtime!r}; valid: {', '.join(WORKER_RUNTIMES)}")
            if not (os.path.isfile(python) and os.access(python, os.X_OK)):
                raise ValueError(f"--worker-python {runtime}={python}: not an executable file")

    def resolved(self) -> "BenchOptions":
        """These options with --quick's smaller workload applied (explicit values that are smaller win)."""
        if not self.quick:
            return self
        return replace(self, warmup=min(self.warmup, QUICK["warmup"]), runs=min(self.runs, QUICK["runs"]),
                       sample=min(self.sample or QUICK["sample"], QUICK["sample"]),
                       budget_s=min(self.budget_s, QUICK["budget_s"]))

    @property
    def integrity(self) -> str:
        """The edge runtime's integrity mode for every row (edge_runtime.artifacts.INTEGRITY_MODES)."""
        return "allow-unverified" if self.allow_unverified else "require"

    def out_dir(self) -> str:
        return self.out or os.path.join(self.run, "bench")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["formats"], d["threads"], d["batches"] = list(self.formats), list(self.threads), list(self.batches)
        d["shifts"] = list(self.shifts)
        d["worker_pythons"] = dict(self.worker_pythons)
        return d


def parse_worker_pythons(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """['tflite-runtime=/venv/bin/python'] -> (('tflite-runtime', '/venv/bin/python'),); a bad item raises ValueError."""
    pairs = []
    for value in values or ():
        runtime, sep, python = value.partition("=")
        if not sep or not runtime.strip() or not python.strip():
            raise ValueError(f"--worker-python must be RUNTIME=PYTHON (e.g. tflite-runtime=venv/bin/python), got {value!r}")
        pairs.append((runtime.strip(), python.strip()))
    return tuple(pairs)


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """'1,2' -> (1, 2); anything else raises ValueError naming the flag."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers like 1,2, got {text!r}") from None
    if not values:
        raise ValueError(f"{what} must list at least one value, got {text!r}")
    return values


def default_option(name: str):
    """The default of one BenchOptions field (what the bench CLI flag defaults to)."""
    return next(f.default for f in fields(BenchOptions) if f.name == name)
