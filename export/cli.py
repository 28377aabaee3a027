"""`fracture-edge export RUN`: every deployable format, each verified on real images through the edge runtime.

Imports cheaply (argparse only); TensorFlow and the converters are imported inside the handler.
"""
from __future__ import annotations

import argparse

# flag -> VerdictRules field (docs/fidelity-verdict.md; the defaults are the written-down ones)
VERDICT_FLAGS = {
    "gate_fp32_max_dprob": ("fp32_max_abs_dprob", "fp32 artifacts: max |p - p_keras|"),
    "margin_auc": ("margin_auc", "compressed artifacts: non-inferiority margin of AUC"),
    "margin_sensitivity": ("margin_sensitivity", "compressed artifacts: margin of sensitivity at each threshold"),
    "margin_specificity": ("margin_specificity", "compressed artifacts: margin of specificity at each threshold"),
}


def register(subparsers) -> None:
    from ..edge_runtime.formats import DEPLOY_PREFERENCE, EXPORT_FORMATS
    from .options import default_option as default

    p = subparsers.add_parser("export", help="export TFLite/ONNX artifacts and verify each on real images",
                              description=__doc__.splitlines()[0])
    p.add_argument("run", help="training run folder (model.keras + bundle.json)")
    p.add_argument("--formats", default=None,
                   help=f"comma-separated, or 'all' = {','.join(EXPORT_FORMATS)} (default: "
                        f"{','.join(default('formats'))}); every format named here must pass its verdict")
    p.add_argument("--calib-data", help="dataset for int8 calibration (default: the bundle's training data)")
    p.add_argument("--calib-images", type=int, default=default("calib_images"),
                   help=f"calibration images, both classes (default {default('calib_images')})")
    p.add_argument("--calib-seed", type=int, default=default("calib_seed"))
    p.add_argument("--verify-data", help="dataset for the fidelity gate (default: the bundle's training data)")
    splits = ",".join(default("verify_splits"))
    p.add_argument("--verify-split", default=splits, help=f"splits to verify on (default {splits})")
    p.add_argument("--android-assets", metavar="DIR",
                   help=f"copy the artifact to deploy (the first that passed of {', '.join(DEPLOY_PREFERENCE)}) and "
                        "bundle.json here")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads used for verification (default: all CPU cores)")
    p.add_argument("--onnx-opset", type=int, default=default("onnx_opset"))
    p.add_argument("--onnx-reduce-range", action="store_true", help="7-bit weights for onnx-int8 (old x86 CPUs)")
    p.add_argument("--no-int8-fallback", action="store_true", help=argparse.SUPPRESS)   # the default now: a no-op
    p.add_argument("--no-equalize", action="store_true",
                   help="quantize the model as is (default: a float-equivalent channel-equalized copy for int8)")
    p.add_argument("--no-fold-normalization", action="store_true",
                   help="keep the input normalization as int8 ops (default: folded into conv1, exact)")
    p.add_argument("--qat-images", type=int, default=default("qat_images"),
                   help="experimental: training images for int8-aware tuning of the weights before int8 "
                        f"quantization (default {default('qat_images')}: post-training quantization only)")
    p.add_argument("--selection-images", type=int, default=default("selection_images"),
                   help="held-out training images that choose the float layers of the opt-in tflite-int8-mixed / "
                        f"onnx-int8-mixed formats (default {default('selection_images')})")
    p.add_argument("--site-images", type=int, default=default("site_images"),
                   help="training images the site check's in-distribution model is fitted on (0 = all, -1 = no "
                        f"site model; default {default('site_images')})")
    for flag, (field, what) in VERDICT_FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), type=float, default=None,
                       help=f"{what} (default {default_rule(field)})")
    p.add_argument("--no-noise-floor", action="store_true",
                   help="do not require compressed artifacts to flip at most as many decisions as a +-1 grey-level "
                        "dither flips in the float model (skips that extra Keras pass)")
    p.set_defaults(handler=run_export_command)


def default_rule(field: str) -> float:
    from .gates import VerdictRules

    return getattr(VerdictRules(), field)


def rules_from_args(args):
    """VerdictRules with the flags given on the command line; a negative margin is a usage error."""
    from dataclasses import replace

    from .gates import VerdictRules

    changes = {field: getattr(args, flag) for flag, (field, _) in VERDICT_FLAGS.items()
               if getattr(args, flag) is not None}
    for field, value in changes.items():
        if field.startswith("margin") and not value >= 0:
            raise ValueError(f"--{field.replace('_', '-')} must be >= 0, got {value:g}")
    return replace(VerdictRules(), **changes, noise_floor=not args.no_noise_floor)


def options_from_args(args):
    import os
    from pathlib import Path

    from ..edge_runtime.dataset import SPLITS
    from ..edge_runtime.formats import EXPORT_FORMATS, parse_formats
    from .options import ExportOptions, default_option

    splits = tuple(s.strip() for s in args.verify_split.split(",") if s.strip())
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return ExportOptions(
        run_dir=Path(args.run), formats_named=args.formats is not None,
        formats=default_option("formats") if args.formats is None else parse_formats(args.formats, EXPORT_FORMATS),
        calib_data=args.calib_data, calib_images=args.calib_images, calib_seed=args.calib_seed,
        verify_data=args.verify_data, verify_splits=splits, android_assets=args.android_assets,
        gates=rules_from_args(args), onnx_opset=args.onnx_opset, onnx_reduce_range=args.onnx_reduce_range,
        selection_images=args.selection_images, site_images=args.site_images,
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
    from .outcome import export_problems
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
    deploy = context.get("deploy")
    print(f"deploy: {deploy['file']} ({deploy['format']})" if deploy else "deploy: no TFLite artifact passed")
    print(f"report: {md_path} ({json_path.name}); {context['seconds_total']:.0f} s, "
          f"peak RSS {context['memory']['peak_rss_mb']:.0f} MB")
    problems = export_problems(rows, opts.formats_named) + ([f"android assets: {android_error}"] if android_error else [])
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0
