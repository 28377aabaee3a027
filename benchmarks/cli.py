"""`fracture-edge bench RUN [RUN ...] --data DIR`: registers the subcommand; heavy imports happen in the handlers."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..edge_runtime.formats import DEFAULT_EXPORT_FORMATS
from .options import default_option


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure every artifact of a run folder side by side (latency, size, memory, accuracy)",
        description="Benchmark the artifacts of a run folder on real images: latency (warm-up, fixed runs, "
                    "p50/p90), load and first-inference time, peak RSS (one subprocess per row), size, "
                    "accuracy/F1/AUC at the bundle's thresholds and agreement with the reference. Writes "
                    "bench.json, bench.md and plots to --out. Several run folders: each is benched in turn with "
                    "the same options into OUT/<run name>/, then OUT gets one model x format bench.json, bench.md "
                    "and latency_vs_auc.png of them all.")
    parser.add_argument("run", nargs="+", metavar="RUN",
                        help="run folder with bundle.json and the exported artifacts; several to compare them")
    parser.add_argument("--data", required=True, help="dataset folder (split/class/image) or split CSV")
    parser.add_argument("--split", default=default_option("split"),
                        help="split to evaluate on (default: %(default)s; 'all' = every image)")
    parser.add_argument("--formats", default="all",
                        help=f"comma-separated formats, or 'all' (default: keras,{','.join(DEFAULT_EXPORT_FORMATS)}, what a plain "
                             "export makes; the opt-in *-int8-mixed rows only when named)")
    parser.add_argument("--threads", default=None, help="thread counts to measure, e.g. 1,2 (default: usable cores)")
    parser.add_argument("--batch", default=",".join(map(str, default_option("batches"))),
                        help="batch sizes to measure, e.g. 1,8 (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=default_option("warmup"),
                        help="untimed calls before timing (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=default_option("runs"), help="timed calls per row (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=default_option("sample"),
                        help="evaluate on a stratified sample of this many images (default: 0 = all)")
    parser.add_argument("--budget", type=float, default=default_option("budget_s"),
                        help="seconds of timing per row before stopping early, >= 5 runs kept (default: %(default)g)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 warm-up, 10 runs, 24 sampled images, 5 s budget per row")
    parser.add_argument("--out", default=None,
                        help="output folder (default: RUN/bench/; several runs: bench-compare/ beside the first run, "
                             "each run's own bench in OUT/<run name>/)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    parser.add_argument("--include-rejected", action="store_true",
                        help="also measure artifacts that export rejected (RUN/rejected/), as '<format> (rejected)' rows")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="measure artifacts that no bundle.json (or, for rejected ones, no export report) "
                             "records; a file that differs from its record is refused anyway")
    parser.add_argument("--worker-python", action="append", metavar="RUNTIME=PYTHON",
                        help="also run each .tflite artifact with TFLite runtime RUNTIME (tflite-runtime) under this "
                             "Python, e.g. a venv with numpy<2 and tflite-runtime (rows '<format> (RUNTIME)'); repeatable")
    parser.add_argument("--shifts", nargs="?", const="all", metavar="NAMES",
                        help="also score each row's accuracy under acquisition shifts (all, or a comma list such as "
                             "invert,jpeg-30), in the same worker: AUC with its 95 %% CI per shift, the worst and "
                             "the mean; one more pass over the images per shift, so slow (off by default)")
    parser.add_argument("--seed", type=int, default=default_option("seed"),
                        help="seed of the random shifts and of the bootstrap CIs")
    parser.add_argument("--gate", action="store_true",
                        help="exit 3 when the fidelity verdict rejects a compressed row (without the noise floor, which "
                             "export measures); several runs: when it does in any run")
    parser.set_defaults(handler=handle_bench)


def options_from_args(args: argparse.Namespace):
    """BenchOptions from parsed flags (unknown values raise ValueError listing valid choices)."""
    from ..edge_runtime.formats import parse_formats
    from ..edge_runtime.shift_scores import parse_shift_names
    from .options import BENCH_FORMATS, BenchOptions, default_threads, parse_int_list, parse_worker_pythons

    threads = parse_int_list(args.threads, "--threads") if args.threads else default_threads()
    return BenchOptions(run=args.run[0], data=args.data, split=args.split,
                        formats=BENCH_FORMATS if args.formats.strip() == "all" else parse_formats(args.formats),
                        threads=threads, batches=parse_int_list(args.batch, "--batch"), warmup=args.warmup,
                        runs=args.runs, sample=args.sample, budget_s=args.budget, out=args.out,
                        gate=args.gate, quick=args.quick, plots=not args.no_plots,
                        include_rejected=args.include_rejected, allow_unverified=args.allow_unverified,
                        worker_pythons=parse_worker_pythons(args.worker_python),
                        shifts=parse_shift_names(args.shifts) if args.shifts else (), seed=args.seed)


def handle_bench(args: argparse.Namespace) -> int:
    if len(args.run) > 1:
        return handle_several(args)
    from ..edge_runtime.errors import FractureEdgeError
    from ..edge_runtime.model_card import write_model_card
    from .bench import run_bench, write_outputs
    from .gating import GATES_MISSING, gates_module

    options = options_from_args(args)
    if options.gate and gates_module() is None:
        raise FractureEdgeError(f"--gate: {GATES_MISSING}")
    prepare_out_dir(options.out_dir())  # before minutes of measuring, not after
    command = "fracture-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = run_bench(options, command=command)
    written = write_outputs(report, options.out_dir(), with_plots=options.plots)
    if Path(options.run).is_dir():
        write_model_card(options.run)
    print(_summary(report, written))
    if not any(row["status"] == "ok" for row in report["rows"]):
        raise FractureEdgeError("no row was measured: every requested row failed or was skipped "
                                f"(reasons in {written[-1] if written else 'the report'})")
    failures = report["gates"]["failures"]
    if options.gate and failures:
        print("fracture-edge: error: fidelity gate failed: " + " | ".join(failures), file=sys.stderr)
        return 3
    return 0


def handle_several(args: argparse.Namespace) -> int:
    """Every run folder checked first, then benched in turn into OUT/<name>/ under OUT's lock, then compared."""
    from ..edge_runtime.errors import FractureEdgeError
    from ..edge_runtime.model_card import write_model_card
    from . import bench
    from .compare import BenchedRun, compare_report, write_compare
    from .gating import GATES_MISSING, gates_module
    from .run_set import default_out, plan_runs
    from .verdicts import read_export_report

    started, options = time.perf_counter(), options_from_args(args)
    if options.gate and gates_module() is None:
        raise FractureEdgeError(f"--gate: {GATES_MISSING}")
    plans = plan_runs(args.run)                      # before minutes of measuring, not after
    out = Path(args.out or default_out(args.run[0]))
    prepare_out_dir(str(out))
    bench.lock_out(out)                              # held until the compare report is written
    try:
        command, runs = "fracture-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:]), []
        for plan in plans:
            run_options = replace(options, run=plan.path, out=str(out / plan.name))
            report = bench.run_bench(run_options, command=command)
            written = bench.write_outputs(report, run_options.out_dir(), with_plots=options.plots)
            write_model_card(plan.path)
            print(f"{plan.title}:\n{_summary(report, written)}")
            runs.append(BenchedRun(plan, report, read_export_report(plan.path)))
        combined = compare_report(runs, command, time.perf_counter() - started)
        written = write_compare(combined, out, with_plots=options.plots)
    finally:
        bench.unlock_out(out)
    print(f"{len(runs)} runs compared; wrote {', '.join(str(p) for p in written)}")
    if not any(row["status"] == "ok" for row in combined["rows"]):
        raise FractureEdgeError(f"no row of any run was measured: every requested row failed or was skipped "
                                f"(reasons in {out / 'bench.md'})")
    failures = [f"{run.plan.name}: {failure}" for run in runs for failure in run.report["gates"]["failures"]]
    if options.gate and failures:
        print("fracture-edge: error: fidelity gate failed: " + " | ".join(failures), file=sys.stderr)
        return 3
    return 0


def prepare_out_dir(out: str) -> None:
    """Create the --out folder now; one clear line when it is a file or cannot be created."""
    from pathlib import Path

    from ..edge_runtime.errors import FractureEdgeError

    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FractureEdgeError(f"--out {out}: exists and is not a folder") from None
    except OSError as exc:
        raise FractureEdgeError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not path.is_dir():
        raise FractureEdgeError(f"--out {out}: exists and is not a folder")


def _summary(report: dict, written: list) -> str:
    lines = []
    for row in report["rows"]:
        lat = row.get("latency") or {}
        figure = f"p50 {lat['p50_ms']:.1f} ms" if lat else f"{row['status']}: {row.get('reason', '')}"
        lines.append(f"{row['label']:<22} t{row.get('threads') or '-'} b{row.get('batch') or '-'}  {figure}")
    lines.append(f"wall time {report['wall_s']:.0f} s; wrote {', '.join(str(p) for p in written)}")
    return "\n".join(lines)
