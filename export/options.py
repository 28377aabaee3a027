"""Export options: one frozen dataclass, the single source of the `fracture-edge export` defaults (export/cli.py)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..edge_runtime.formats import DEFAULT_EXPORT_FORMATS
from .gates import VerdictRules
from .onnx_export import OPSET
from .site_fit import SITE_IMAGES


@dataclass(frozen=True)
class ExportOptions:
    run_dir: Path
    formats: tuple[str, ...] = DEFAULT_EXPORT_FORMATS
    formats_named: bool = False         # --formats given: every named format must pass (see export_exit_code)
    calib_data: str | None = None
    calib_images: int = 300
    calib_seed: int = 0
    verify_data: str | None = None
    verify_splits: tuple[str, ...] = ("val", "test")
    android_assets: str | None = None
    gates: VerdictRules = field(default_factory=VerdictRules)
    onnx_opset: int = OPSET
    onnx_reduce_range: bool = False
    selection_images: int = 400         # held-out training images that choose the float ops of a *-int8-mixed row
    site_images: int = SITE_IMAGES      # training images of the site model (0 = all, -1 = none): export/site_fit.py
    equalize: bool = True
    qat_images: int = 0                 # training images for int8-aware tuning (0: post-training only)
    fold_normalization: bool = True     # int8 formats read raw pixels in conv1 (export/stem_fold.py)
    num_threads: int | None = None


def default_option(name: str):
    """The default of one ExportOptions field (what the CLI flag defaults to)."""
    return next(f.default for f in fields(ExportOptions) if f.name == name)
