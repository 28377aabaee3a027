"""`fracture-edge export RUN`: every deployable format, each verified on real images through the edge runtime.

Imports cheaply (argparse only); TensorFlow and the converters are imported inside the handler.
"""
from __future__ import annotations

import argparse

DEFAULT_SPLITS = "val,test"

# flag -> (precision, GateLimits field)
GATE_FLAGS = {
    "gate_fp32_max_dprob": ("fp32", "max_abs_dprob"),
    "gate_fp16_max_df1": ("fp16", "max_abs_df1"),
    "gate_int8_max_df1": ("int8", "max_abs_df1"),
    "gate_int8_max_dauc": ("int8", "max_abs_dauc"),
    "gate_int8_min_agreement": ("int8", "min_agreement"),
}


def register(subparsers) -> None:
    from ..edge_runtime.formats import EXPORT_FORMATS

    p = subparsers.add_parser("export", help="export TFLite/ONNX artifacts and verify each on real images",
                              description=__doc__.splitlines()[0])
    p.add_argument("run", help="training run folder (model.keras + bundle.json)")
    p.add_argument("--formats", default=",".join(EXPORT_FORMATS),
                   help=f"comma-separated, or 'all' (default: all = {','.join(EXPORT_FORMATS)})")
    p.add_argument("--calib-data", help="dataset for int8 calibration (default: the bundle's training data)")
    p.add_argument("--calib-images", type=int, default=300, help="calibration images, both classes (default 300)")
    p.add_argument("--calib-seed", type=int, default=0)
    p.add_argument("--verify-data", help="dataset for the fidelity gate (default: the bundle's training data)")
    p.add_argument("--verify-split", default=DEFAULT_SPLITS, help="splits to verify on (default val,test)")
    p.add_argument("--android-assets", metavar="DIR", help="copy model_int8.tflite and bundle.json here")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads used for verification (default: all CPU cores)")
    p.add_argument("--onnx-opset", type=int, default=17)
    p.add_argument("--onnx-reduce-range", action="store_true", help="7-bit weights for onnx-int8 (old x86 CPUs)")
    p.add_argument("--no-int8-fallback", action="store_true",
                   help="do not retry a failing int8 format with its first layers kept in float")
    p.add_argument("--no-equalize", action="store_true",
                   help="quantize the model as is (default: a float-equivalent channel-equalized copy for int8)")
    p.add_argument("--no-fold-normalization", action="store_true",
                   help="keep the input normalization as int8 ops (default: folded into conv1, exact)")
    p.add_argument("--qat-images", type=int, default=0,
                   help="experimental: training images for int8-aware tuning of the weights before int8 "
                        "quantization (default 0: post-training quantization only)")
    p.add_argument("--selection-images", type=int, default=400,
                   help="held-out training images that choose the float layers of a mixed int8 (default 400)")
    for flag, (precision, field) in GATE_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), type=float, default=None,
                       help=f"{precision} gate: {field} (default {default_limit(precision, field)})")
    p.set_defaults(handler=run_export_command)


def default_limit(precision: str, field: str) -> float | None:
    from .gates import Gates

    return getattr(Gates().limits_for(precision), field)


def gates_from_args(args):
    from .gates import Gates

    gates = Gates()
    for flag, (precision, field) in GATE_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            gates = gates.with_limit(precision, **{field: value})
    return gates


def options_from_args(args):
    import os
    from pathlib import Path

    from ..edge_runtime.dataset import SPLITS
    from ..edge_runtime.formats import EXPORT_FORMATS, parse_formats
    from .pipeline import ExportOptions

    splits = tuple(s.strip() for s in args.verify_split.split(",") if s.strip())
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return ExportOptions(
        run_dir=Path(args.run), formats=parse_formats(args.formats, EXPORT_FORMATS),
        calib_data=args.calib_data, calib_images=args.calib_images, calib_seed=args.calib_seed,
        verify_data=args.verify_data, verify_splits=splits, android_assets=args.android_assets,
        gates=gates_from_args(args), onnx_opset=args.onnx_opset, onnx_reduce_range=args.onnx_reduce_range,
        int8_fallback=not args.no_int8_fallback, selection_images=args.selection_images,
        equalize=not args.no_equalize, qat_images=args.qat_images,
        fold_normalization=not args.no_fold_normalization,
        num_threads=args.threads or os.cpu_count())


def run_export_command(args) -> int:
    from ..edge_runtime.errors import missing_extra

    import os

    opts = options_from_args(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ INFO lines out of the progress log
    for module in ("tensorflow", "tf2onnx", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise missing_extra(module, "export", "fracture-edge export") from None
    from .pipeline import run_export
    from ..edge_runtime.model_card import write_model_card
    from .report import table_cells, write_reports

    rows, context = run_export(opts)
    json_path, md_path = write_reports(opts.run_dir, rows, context)
    write_model_card(opts.run_dir)
    for row in rows:
        cells = table_cells(row)
        print(f"{cells[0]:<12} {cells[1]:<14} {cells[2]:>6} MB  F1 {cells[8]}  AUC {cells[9]}  "
              f"max|dp| {cells[13]}  {cells[14]}")
    android_error = (context.get("android_assets") or {}).get("error")
    if android_error:
        print(f"android assets: {android_error}")
    print(f"report: {md_path} ({json_path.name}); {context['seconds_total']:.0f} s, "
          f"peak RSS {context['memory']['peak_rss_mb']:.0f} MB")
    return 0 if all(r.ok for r in rows) and not android_error else 1
