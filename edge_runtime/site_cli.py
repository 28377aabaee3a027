"""`fracture-edge check-site RUN --data FOLDER`: are a site's images like the model's training data? No labels.

Every image of FOLDER goes through the artifact once; its `features` output gives the site model's
in_distribution score (edge_runtime/site_model.py). The share flagged, its Wilson 95 % interval and an exact
binomial test against the 5 % that training-like images are flagged give the verdict. Writes OUT/site_check.json,
OUT/site_scores.csv and OUT/site_scores.png (the score distribution beside the training images'). Exit 0: like
the training data; 3: different (adapt before use); 1: no site model, too few readable images, or another error;
unreadable images are skipped and reported.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DIFFERENT_EXIT = 3


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-site", help="are a folder's images like the training data? (no labels; before adapt or deployment)",
        description="Score every image of a folder with the run's site model: the share outside the training "
                    "data, its 95 %% CI, an exact binomial test against the training images' 5 %%, a verdict and "
                    "a plot. Exit 0: like the training data; 3: different (adapt first); 1: error.")
    p.add_argument("run", metavar="RUN", help="exported run folder (bundle.json with a site_model)")
    p.add_argument("--data", required=True, metavar="FOLDER", help="the site's images (files, folders or globs)")
    p.add_argument("--format", default=None, help="artifact to run (default: as predict chooses)")
    p.add_argument("--out", default=None, metavar="DIR", help="report folder (default: RUN/site-check-<FOLDER name>)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--threads", type=int, default=None, metavar="N")
    p.add_argument("--batch-size", type=int, default=16, metavar="N")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--allow-unverified", action="store_true", help="run an artifact no bundle.json records")
    p.set_defaults(handler=run_check_site)


def score_folder(clf, paths: list[str], batch_size: int) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(scored paths, their distances from the training data, (path, reason) of skipped files): one model run
    per batch, the site model applied to its features output."""
    from .classifier import FEATURES, batches, failure_for
    from .preprocessing import load_batch
    from .progress import progress

    scored, distances, failed = [], [], []
    chunks = list(batches(paths, batch_size))
    for chunk in progress(chunks, desc="check-site", total=len(chunks), enabled=sys.stderr.isatty()):
        pixels, kept, failures = load_batch(chunk, clf.contract)
        failed += [(f.path, f.reason) for f in (failure_for(path, message) for path, message in failures)]
        if len(kept):
            features = clf.outputs(pixels, (FEATURES,))[1][FEATURES]
            distances.append(clf.site.distances(features.reshape(len(kept), -1)))
            scored += [chunk[i] for i in kept]
    return scored, np.concatenate(distances) if distances else np.zeros(0), failed


def site_model_summary(record: dict) -> dict:
    """What the report says of the site model, from its bundle.json record: the method, its size and training
    images, and for "ppca" the residual_scale and how K was chosen (component_choice: chosen K, the rule, on
    which images); an older "mahalanobis-pca" record has neither, and the report leaves them out."""
    summary = {k: record.get(k) for k in ("method", "components", "images", "source")}
    summary.update({k: record[k] for k in ("residual_scale", "component_choice") if k in record})
    return summary


def site_model_line(summary: dict) -> str:
    """One line naming the site model for the text output."""
    line = f"site model: {summary['method']}, {summary['components']} components"
    choice = summary.get("component_choice")
    if isinstance(choice, dict):
        line += f" (K chosen on {choice.get('images')} images of {choice.get('on')}: {choice.get('rule')})"
    if summary.get("residual_scale") is not None:
        line += f", residual_scale {summary['residual_scale']:.4g}"
    return line


def check_site(clf, paths: list[str], batch_size: int = 16) -> dict:
    """The site report: verdict, per-image scores, skipped files (needs a classifier with a site model)."""
    from .errors import FractureEdgeError
    from .site_model import judge_site

    if clf.site is None:
        raise FractureEdgeError(f"{clf.path}: no site model beside this artifact (re-export the run with this "
                                "version: fracture-edge export RUN)")
    scored, distances, failed = score_folder(clf, paths, batch_size)
    scores = clf.site.scores_of_distances(distances)
    verdict = judge_site(scores < clf.site.flag_below)
    return {"verdict": verdict.to_dict(), "format": clf.format.name, "file": Path(clf.path).name,
            "site_model": site_model_summary(clf.bundle["site_model"]),
            "images": [{"path": p, "in_distribution": round(float(s), 4),
                        "outside_training_data": bool(s < clf.site.flag_below)} for p, s in zip(scored, scores)],
            "skipped": [{"path": p, "reason": r} for p, r in failed],
            "distances": distances}


def write_report(report: dict, out: Path, held_out: np.ndarray, site_distances: np.ndarray) -> list[Path]:
    """site_check.json, site_scores.csv and (with matplotlib) site_scores.png, each written atomically."""
    from . import atomic

    out.mkdir(parents=True, exist_ok=True)
    written = [atomic.write_json(out / "site_check.json", report)]
    with atomic.atomic_path(out / "site_scores.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=("path", "in_distribution", "outside_training_data"))
        writer.writeheader()
        writer.writerows(report["images"])
    written.append(out / "site_scores.csv")
    plot = plot_distances(out / "site_scores.png", held_out, site_distances, report["verdict"])
    return written + ([plot] if plot else [])


def plot_distances(path: Path, held_out: np.ndarray, site: np.ndarray, verdict: dict) -> Path | None:
    """Histogram of the site's distances over the held-out training images', with the flag line."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("no plot: matplotlib is not installed (pip install \"fracture-edge[plots]\")")
        return None
    from . import atomic

    cut = float(np.quantile(held_out, 0.95)) if held_out.size else None
    top = max(float(np.max(held_out, initial=1.0)), float(np.max(site, initial=1.0)))
    bins = np.linspace(0.0, top * 1.02, 40)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.hist(held_out, bins=bins, density=True, alpha=0.55, label=f"training images held out ({held_out.size})")
    ax.hist(site, bins=bins, density=True, alpha=0.55, label=f"this site ({site.size})")
    if cut is not None:
        ax.axvline(cut, color="k", linestyle="--", linewidth=1, label="flagged beyond (5 % of training)")
    ax.set_xlabel("distance from the training data (whitened RMS)")
    ax.set_ylabel("density")
    ax.set_title(f"{verdict['flagged']}/{verdict['images']} flagged ({verdict['share']:.1%}): {verdict['verdict']}",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def run_check_site(args: argparse.Namespace) -> int:
    from .classifier import open_classifier
    from .errors import FractureEdgeError
    from .predict_cli import collect_images, integrity_mode, shown

    paths, problems = collect_images([args.data], args.recursive)
    if not paths:
        raise FractureEdgeError(f"{args.data}: no images to check ({'; '.join(r for _, r in problems) or 'empty'})")
    clf = open_classifier(args.run, num_threads=args.threads, format=args.format, integrity=integrity_mode(args))
    report = check_site(clf, paths, args.batch_size)
    report["skipped"] += [{"path": p, "reason": r} for p, r in problems]
    for item in report["skipped"]:
        print(f"fracture-edge: {shown(item['path'])}: {item['reason']}", file=sys.stderr)
    verdict = report["verdict"]
    if verdict["verdict"] == "too few images":
        raise FractureEdgeError(f"{args.data}: {verdict['words']}")
    out = Path(args.out) if args.out else Path(args.run) / f"site-check-{Path(args.data).name or 'data'}"
    distances = report.pop("distances")
    written = write_report(report, out, clf.site.held_out, distances)
    if args.json:
        print(json.dumps(report["verdict"]))
    else:
        print(f"{args.data}: {verdict['flagged']} of {verdict['images']} images outside the training data "
              f"({verdict['share']:.1%}, 95 % CI {verdict['ci_low']:.1%}-{verdict['ci_high']:.1%}; training-like "
              f"images: {verdict['expected']:.0%}; binomial p = {verdict['p_value']:.3g})")
        print(f"verdict: {verdict['words']}")
        print(site_model_line(report["site_model"]))
        print(f"report: {', '.join(str(p) for p in written)}")
    return DIFFERENT_EXIT if verdict["verdict"] == "different" else 0
