"""`fracture-edge adapt`: fit a new head for a site on a few dozen of its labelled X-rays, on the device.

    result = adapt_run(AdaptOptions(run="runs/base", data="site/", out="runs/site"))

Features come from an exported artifact (its `features` output, through the Classifier), the head is a
class-weighted, L2-regularised logistic regression whose C and thresholds are chosen by cross-validation
(cv.py), and the numbers reported are nested cross-validation beside a trivial baseline and the base
model (report.py). The new run folder holds bundle.json (the base bundle plus adapted_head, the new
thresholds and the provenance), adapt_report.{json,md} and model_card.md. The model files are not copied:
each is a relative symbolic link into the base run, and the new bundle records its sha256 as every bundle
does, so the integrity rule holds (a modified base file never runs). Where links cannot be made (a file
system without them) the file is copied and a warning says so. Moving the new run elsewhere needs the base
run beside it, or `cp -rL` (which copies the files the links point at). numpy only; no TensorFlow.

The new run folder is claimed before anything is read (atomic.claimed_folder): a second adapt into the same
--out fails at once, the folder is built out of sight beside it and renamed into place when complete, so a
kill, a crash or a full disk never leaves a half-made --out (a killed run's leftovers are removed by the next
one). Before any feature is read, an image under both labels is refused and an overlap with the base model's
own data is warned about (checks.py).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import atomic
from .checks import base_overlap_warning, check_duplicates, file_hashes
from .cv import FOLDS, fit_head
from .data import (AdaptDataError, LocalSet, check_counts, load_local_set, read_local_samples)
from .report import REPORT_JSON, REPORT_MD, baseline_warning, evaluate_adaptation, render_markdown
from ..bundle import BUNDLE_FILENAME, load_bundle, save_bundle
from ..classifier import open_classifier
from ..dataset import LABELS
from ..metrics import SCREENING_SENSITIVITY
from ..model_card import CARD_FILENAME, write_model_card
from ..site_model import BUNDLE_KEY as SITE_KEY, judge_site
from ..bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)

FEATURES = "features"


@dataclass(frozen=True)
class AdaptOptions:
    run: Path                      # the base run folder (exported, with a features output)
    data: Path                     # the site's labelled images: class sub-folders or a split CSV
    out: Path                      # the new run folder (must not exist, or be empty)
    format: str | None = None      # which artifact gives the features (default: the runtime's preference)
    split: str | None = None       # keep only this split of a CSV (default: every row)
    folds: int = FOLDS
    seed: int = 0
    threads: int | None = None
    batch_size: int = 16
    show_progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("run", "data", "out"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        if not 2 <= self.folds <= 20:
            raise ValueError(f"folds must be from 2 to 20, got {self.folds}")


@dataclass(frozen=True)
class AdaptResult:
    out: Path
    report: dict
    warnings: tuple[str, ...] = field(default_factory=tuple)


class Phases:
    """Wall time of each named phase, logged as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._start, 2)
        log.info("adapt: %s %.1f s", name, now - self._start)
        self._start = now


def check_out_folder(out: Path, run: Path) -> None:
    if out.resolve() == run.resolve():
        raise AdaptDataError(f"{out}: the new run folder must differ from the base run")
    if atomic.out_taken(out):
        raise AdaptDataError(f"{out}: exists and is not an empty folder; choose a new run folder")


def adapt_run(opts: AdaptOptions) -> AdaptResult:
    """Fit, evaluate and write the adapted run; raises FractureEdgeError with one line on bad input."""
    phases = Phases()
    base = load_bundle(opts.run)
    if base.get("adapted_head"):
        source = base["adapted_head"].get("provenance", {}).get("base_run", "its base run")
        raise AdaptDataError(f"{opts.run}: is itself an adapted run; adapt {source} instead")
    check_out_folder(opts.out, opts.run)
    with atomic.claimed_folder(opts.out, "fracture-edge adapt") as folder:
        samples = read_local_samples(opts.data, opts.split)
        check_counts({label: sum(s.label == label for s in samples) for label in LABELS}, str(opts.data))
        hashes = file_hashes(samples)
        early = check_duplicates(samples, hashes, str(opts.data))
        overlap = base_overlap_warning(base, opts.data, hashes)
        early += [overlap] if overlap else []
        for line in early:
            log.warning("%s", line)
        clf = open_classifier(opts.run, num_threads=opts.threads, format=opts.format, integrity="require")
        if FEATURES not in clf.extra_outputs:
            raise AdaptDataError(f"{clf.path}: has no features output (exported before issue 15); "
                                 f"re-export the run: fracture-edge export {opts.run}")
        phases.done("load")
        local = load_local_set(samples, clf, opts.batch_size, opts.show_progress, hashes)
        phases.done("features")
        return fit_and_write(opts, folder, base, clf, local, phases, early)


def adapt_local(opts: AdaptOptions, base: dict, clf, local: LocalSet, phases: Phases | None = None) -> AdaptResult:
    """The fit, the evaluation and the new run folder for a local set whose features are already read
    (the site simulation reuses one feature pass for many draws); claims opts.out like adapt_run."""
    check_out_folder(opts.out, opts.run)
    with atomic.claimed_folder(opts.out, "fracture-edge adapt") as folder:
        return fit_and_write(opts, folder, base, clf, local, phases or Phases(), [])


def fit_and_write(opts: AdaptOptions, folder: Path, base: dict, clf, local: LocalSet, phases: Phases,
                  logged: list[str]) -> AdaptResult:
    """Fit, evaluate, and write the run into `folder` (the claimed build folder that becomes opts.out);
    `logged`: warnings already shown, which go into the report too."""
    warnings = list(logged) + check_counts(local.counts(), str(opts.data))
    site = site_check(clf, local)
    target = float(base["thresholds"].get("screening_target_sensitivity", SCREENING_SENSITIVITY))
    fitted = fit_head(local.features, local.targets, target, k=opts.folds, seed=opts.seed)
    phases.done("fit")
    evaluation = evaluate_adaptation(local, base["thresholds"], target, opts.folds, opts.seed)
    warning = baseline_warning(evaluation)
    warnings += [warning] if warning else []
    phases.done("cross-validation")
    report = build_report(opts, clf, local, fitted, evaluation, warnings, phases.seconds)
    report["site_check"] = site
    write_adapted_run(opts, folder, base, report, fitted)
    phases.done("write")
    report["seconds"] = phases.seconds
    atomic.write_json(folder / REPORT_JSON, report)
    atomic.write_text(folder / REPORT_MD, render_markdown(report))
    write_model_card(folder)
    for line in warnings[len(logged):]:
        log.warning("%s", line)
    return AdaptResult(opts.out, report, tuple(warnings))


def site_check(clf, local: LocalSet) -> dict | None:
    """check-site on the local images before the fit (their features are already read), logged in words."""
    if getattr(clf, "site", None) is None:
        return None
    verdict = judge_site(clf.site.flags(local.features))
    log.info("adapt: site check: %d of %d local images outside the training data (%.1f %%): %s", verdict.flagged,
             verdict.images, 100 * verdict.share, verdict.words)
    return verdict.to_dict()


def build_report(opts: AdaptOptions, clf, local: LocalSet, fitted, evaluation: dict, warnings: list,
                 seconds: dict) -> dict:
    return {"base_run": str(opts.run), "base_bundle_sha256": _sha256(opts.run / BUNDLE_FILENAME),
            "format": clf.format.name, "data": str(opts.data), "split": opts.split,
            "local_set_sha256": local.listing_sha256, "counts": local.counts(),
            "skipped": [list(f) for f in local.failures], "features": int(local.features.shape[1]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "folds": opts.folds, "seed": opts.seed,
            "C": fitted.C, "cv_loss_by_C": fitted.loss_by_C, "thresholds": fitted.thresholds,
            "evaluation": evaluation, "warnings": list(warnings), "seconds": dict(seconds)}


def adapted_bundle(base: dict, report: dict, fitted, artifacts: dict) -> dict:
    """The base bundle with the adapted head, its thresholds, provenance, local metrics and linked artifacts."""
    bundle = copy.deepcopy(base)
    ev = report["evaluation"]["adapted"]
    provenance = {key: report[key] for key in ("base_run", "base_bundle_sha256", "format", "data", "split",
                                               "local_set_sha256", "counts", "date", "C", "folds", "seed")}
    bundle["model"] = f"{base.get('model', 'model')}, head adapted on {report['data']}"
    bundle["adapted_head"] = {"kind": "logistic", "output": FEATURES, "weights": fitted.head.weights.tolist(),
                              "bias": fitted.head.bias, "provenance": provenance}
    bundle["thresholds"] = {"balanced": fitted.thresholds["balanced"], "screening": fitted.thresholds["screening"],
                            "default": base["thresholds"].get("default", "balanced"),
                            "screening_target_sensitivity": fitted.thresholds["screening_target_sensitivity"],
                            "chosen_on": "local set, out-of-fold probabilities (cross-validation)"}
    n = sum(report["counts"].values())
    bundle["metrics"] = {"local_cv": {"n": n, "n_positive": report["counts"].get(LABELS[1], 0),
                                      "auc": ev["auc"]["value"],
                                      **{p: {"sensitivity": ev[p]["sensitivity"]["value"],
                                             "specificity": ev[p]["specificity"]["value"]}
                                         for p in THRESHOLD_NAMES}}}
    bundle["data"] = {"source": report["data"], "adapted_on": True,
                      "splits": {"local": {"images": n, "fractured": report["counts"].get(LABELS[1], 0)}}}
    bundle["artifacts"] = artifacts
    bundle["model_card"] = CARD_FILENAME
    return bundle


def write_adapted_run(opts: AdaptOptions, folder: Path, base: dict, report: dict, fitted) -> None:
    """Link the base run's exported artifacts that have a features output, then write bundle.json, into `folder`
    (links relative to opts.out, where the folder will be)."""
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    for name, record in (base.get("artifacts") or {}).items():
        source = opts.run / record["file"]
        if name == "keras" or not _has_features(opts.run, name):
            log.info("adapt: %s not linked (%s)", record["file"],
                     "the Keras model cannot apply the head" if name == "keras" else "no features output")
            continue
        artifacts[name] = {**record, "base_file": link_or_copy(source, folder / record["file"], opts.out)}
    site = base.get(SITE_KEY)
    if isinstance(site, dict) and (opts.run / str(site.get("file"))).is_file():   # same features, same site model
        link_or_copy(opts.run / site["file"], folder / site["file"], opts.out)
    save_bundle(folder, adapted_bundle(base, report, fitted, artifacts))


def _has_features(run: Path, fmt: str) -> bool:
    try:
        return FEATURES in open_classifier(run, format=fmt, integrity="require").extra_outputs
    except Exception as exc:  # noqa: BLE001 (a runtime not installed, a broken file: just not linked)
        log.info("adapt: %s of %s not usable here: %s", fmt, run, str(exc).splitlines()[0] if str(exc) else exc)
        return False


def link_or_copy(source: Path, target: Path, final: Path | None = None) -> str:
    """A relative symbolic link target -> source (a copy where links fail); returns the relative path. `final`:
    the folder target's folder will be renamed to (the link is made relative to it, so it holds there)."""
    relative = os.path.relpath(source.resolve(), (final or target.parent).resolve())
    try:
        os.symlink(relative, target)
    except OSError as exc:
        log.warning("%s: cannot link to %s (%s); copying the file instead", target, source, exc.strerror or exc)
        try:
            shutil.copy2(source, target)
        except OSError as copy_exc:    # a full disk: name the copy, not the file copied (copyfile names that)
            raise OSError(copy_exc.errno, copy_exc.strerror or str(copy_exc), str(target)) from None
    return relative


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
