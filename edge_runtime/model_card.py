"""RUN/model_card.md, rendered from the run folder's own files (TRIPOD+AI / CLAIM in spirit).

Nothing here is typed by hand: every number comes from bundle.json, predictions.json, the dataset's
split CSV, and, when they exist, the shift suite, the export report and the bench report. `train`
writes the card; `export`, `bench` and `eval --shifts` regenerate it. numpy only (runs on a device).
"""
from __future__ import annotations

import csv
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import atomic
from .confidence import auc_ci, format_ci, metric_cis
from .shifts import STABILITY_PROBES
from .bundle_schema import THRESHOLD_NAMES

log = logging.getLogger(__name__)

CARD_FILENAME = "model_card.md"
NOT_A_DEVICE = ("**Not a medical device.** Not cleared or approved by any regulator; not for diagnosis or "
                "treatment decisions. A qualified reader must read every image.")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):   # unreadable, not JSON, or nested too deeply to parse
        return None


def _split_rows(source: str | None) -> dict[str, dict]:
    """split.csv rows keyed by file name (region, hardware) when the dataset has one."""
    if not source:
        return {}
    path = Path(source) / "split.csv" if Path(source).is_dir() else Path(source)
    try:
        with path.open(newline="") as handle:
            return {Path(row["path"]).name: row for row in csv.DictReader(handle) if "path" in row}
    except (OSError, ValueError, csv.Error, KeyError):
        return {}


def _metrics_section(y: np.ndarray, p: np.ndarray, thresholds: dict) -> list[str]:
    cis = metric_cis(y, p, thresholds)
    lines = [f"AUC {format_ci(cis['auc'])}, n = {y.size} ({int(y.sum())} fractured).", "",
             "| operating point | threshold | sensitivity | specificity | precision | F1 |", "|---|---|---|---|---|---|"]
    for name in THRESHOLD_NAMES:
        if name in cis:
            c = cis[name]
            lines.append(f"| {name} | {thresholds[name]:.3f} | {format_ci(c['sensitivity'])} | "
                         f"{format_ci(c['specificity'])} | {format_ci(c['precision'])} | {format_ci(c['f1'])} |")
    return lines


def _subgroup_section(paths: list[str], y: np.ndarray, p: np.ndarray, rows: dict, threshold: float) -> list[str]:
    """AUC and sensitivity/specificity at the balanced threshold per body region and hardware flag."""
    meta = [rows.get(Path(x).name) for x in paths]
    if not rows or any(m is None for m in meta):
        return ["No split CSV with per-image metadata beside the data: subgroups not computed."]
    groups: dict[str, np.ndarray] = {}
    for key in ("region",):
        for value in sorted({m.get(key, "") for m in meta}):
            groups[f"{key} = {value or '?'}"] = np.array([m.get(key, "") == value for m in meta])
    if all("hardware" in m for m in meta):
        hardware = np.array([m["hardware"] == "1" for m in meta])
        groups["with hardware"], groups["without hardware"] = hardware, ~hardware
    lines = ["| subgroup | n | fractured | AUC (95 % CI) | sensitivity | specificity |", "|---|---|---|---|---|---|"]
    for name, mask in groups.items():
        yy, pp = y[mask], p[mask]
        pos, neg = int(yy.sum()), int((1 - yy).sum())
        auc = format_ci(auc_ci(yy, pp)) if pos and neg else "n/a"
        sens = f"{((pp >= threshold) & (yy == 1)).sum() / pos:.3f}" if pos else "n/a"
        spec = f"{((pp < threshold) & (yy == 0)).sum() / neg:.3f}" if neg else "n/a"
        lines.append(f"| {name} | {mask.sum()} | {pos} | {auc} | {sens} | {spec} |")
    lines += ["", "Small subgroups have wide intervals: read them as signals, not as estimates."]
    return lines


def _shift_section(run: Path) -> list[str]:
    suites = sorted(run.glob("shifts_*_test.json"))
    if not suites:
        return ["Not run yet: `fracture-edge eval RUN --shifts` scores the test split under 17 acquisition shifts and 3 stability probes."]
    result = _read_json(suites[0]) or {}
    lines = [f"From `{suites[0].name}` ({result.get('format')}, n = {result.get('n')}):", "",
             "| shift | AUC (95 % CI) | decisions kept (balanced / screening) |", "|---|---|---|",
             f"| clean | {format_ci(result['clean'])} | |"]
    for name, row in result.get("shifts", {}).items():
        kept = row.get("decisions_kept", {})
        kept_text = " / ".join(f"{kept[p]:.1%}" for p in THRESHOLD_NAMES if p in kept)
        label = f"{name} (stability probe)" if name in STABILITY_PROBES else name
        lines.append(f"| {label} | {format_ci(row['auc'])} | {kept_text} |")
    if result.get("worst"):
        lines += ["", f"Worst: {result['worst']['shift']} (AUC {result['worst']['auc']:.3f}); "
                      f"mean over acquisition shifts {result['mean_auc']:.3f} (stability probes left out: "
                      "they measure whether a decision survives an invisible change)."]
    return lines


def _export_section(run: Path) -> list[str]:
    report = _read_json(run / "export_report.json")
    if not report:
        return ["Not exported yet (`fracture-edge export RUN`)."]
    lines = ["| format | verdict | MB | flips balanced / screening (dither-1 floor) | agreement balanced / screening "
             "| dF1 balanced / screening | dAUC |", "|---|---|---|---|---|---|---|"]
    for row in report.get("rows", []):
        gate = row.get("gate") or {}
        points, floor = gate.get("per_threshold", {}), gate.get("noise_floor") or {}
        agree = " / ".join(f"{points[k]['agreement']:.2%}" for k in THRESHOLD_NAMES if k in points)
        flips = " / ".join(f"{floor[k]['flips']} ({floor[k]['dither_flips']})" for k in THRESHOLD_NAMES
                           if k in floor) or ("exactness" if gate.get("rule") == "exact" else "")
        d_f1 = " / ".join(f"{points[k]['d_f1']:+.3f}" for k in THRESHOLD_NAMES if k in points)
        d_auc = f"{gate['auc'] - gate['auc_ref']:+.4f}" if gate.get("auc") is not None and gate.get("auc_ref") is not None else ""
        size = f"{row['bytes'] / 1e6:.1f}" if row.get("bytes") else ""
        verdict = {"ok": "pass", "gate failed": "rejected"}.get(row["status"], row["status"])
        lines.append(f"| {row['format']} | {verdict} | {size} | {flips} | {agree} | {d_f1} | {d_auc} |")
    rules = report.get("gates") or {}
    deploy = report.get("deploy")
    return lines + ["", "Verdict (docs/fidelity-verdict.md, fixed before it judged this model): a compressed artifact "
                    "passes when the paired bootstrap 95 % CI of its change against Keras lies above −"
                    f"{rules.get('margin_auc')} AUC and −{rules.get('margin_sensitivity')} sensitivity / "
                    f"−{rules.get('margin_specificity')} specificity at both thresholds, and it flips no more decisions "
                    "than the Keras model does under a ±1 grey-level dither of the same images; fp32 must be exact. "
                    "Agreement: share of verification images (val + test) given the same decision as the Keras model.",
                    "", f"Deploy: `{deploy['file']}` ({deploy['format']})." if deploy else
                    "Deploy: no TFLite artifact passed its verdict."]


def _heatmap_section(run: Path) -> list[str]:
    """The pointing game per artifact (heatmap peak within a margin of a box) and its chance baseline, from export."""
    heatmaps = (_read_json(run / "export_report.json") or {}).get("heatmaps") or {}
    keras = heatmaps.get("keras") or {}
    game, base = keras.get("pointing_game"), keras.get("center_baseline")
    if not game:
        return ["Not measured (no export with heatmaps, or no boxes.csv in the verification data)."]
    lines = [f"Pointing game: the heatmap's peak within {game['margin_px']} px of a box, on {game['images']} fractured "
             f"{game['split']} images; the image centre (chance) scores {base['hit_rate']:.1%}.", "",
             "| row | pointing game | heatmap correlation with Keras (median / 5th pct) |", "|---|---|---|",
             f"| keras | {game['hit_rate']:.1%} | reference |"]
    report = _read_json(run / "export_report.json") or {}
    for row in report.get("rows", []):
        facts = (row.get("facts") or {}).get("heatmap") or {}
        point = facts.get("pointing_game") or {}
        if point:
            lines.append(f"| {row['format']} | {point['hit_rate']:.1%} | {facts.get('correlation_median')} / "
                         f"{facts.get('correlation_p5')} |")
    return lines + ["", "A heatmap shows where the model looked, not that it found the fracture."]


def _speed_section(run: Path) -> list[str]:
    bench = _read_json(run / "bench" / "bench.json")
    if not bench:
        return ["Not benchmarked yet (`fracture-edge bench RUN`)."]
    cpu = (bench.get("environment") or {}).get("cpu", {})
    lines = [f"Machine: {cpu.get('model', '?') if isinstance(cpu, dict) else cpu}", "",
             "| row | p50 ms | p90 ms | file MB |", "|---|---|---|---|"]
    for row in bench.get("rows", []):
        latency = row.get("latency") or {}
        if row.get("status") == "ok" and latency:
            lines.append(f"| {row.get('label', row.get('format'))} | {latency['p50_ms']:.1f} | {latency['p90_ms']:.1f} | "
                         f"{(row.get('file_bytes') or 0) / 1e6:.1f} |")
    return lines


def _adaptation_section(run: Path, bundle: dict) -> list[str]:
    """What `fracture-edge adapt` did: the head, its provenance and its nested cross-validated numbers."""
    head = bundle["adapted_head"]
    prov, report = head.get("provenance") or {}, _read_json(run / "adapt_report.json") or {}
    lines = [f"This run is the base run `{prov.get('base_run', '?')}` (bundle sha256 "
             f"`{str(prov.get('base_bundle_sha256', '?'))[:16]}...`) with a new head fitted on {prov.get('date', '?')} "
             f"on the site's labelled images `{prov.get('data', '?')}` ({prov.get('counts', {})}; listing sha256 "
             f"`{str(prov.get('local_set_sha256', '?'))[:16]}...`): P(fractured) = sigmoid(features . w + b) on the "
             f"artifact's `{head['output']}` output ({len(head['weights'])} values), class-weighted L2 logistic "
             f"regression, C = {prov.get('C', '?')} and both thresholds chosen by cross-validation on those images, "
             f"features read from `{prov.get('format', '?')}`. The heatmap is not offered (it explains the base head).", ""]
    evaluation = report.get("evaluation") or {}
    if not evaluation:
        return lines + ["adapt_report.json is missing: no cross-validated numbers to show."]
    lines += [f"{evaluation['method']}, 95 % CIs (stratified bootstrap):", "", "| model | AUC (95 % CI) |", "|---|---|"]
    for key, name in (("adapted", "adapted head"), ("baseline", "baseline on image statistics (mean, SD, width, "
                                                                 "height)"), ("base_model", "base model, unchanged")):
        lines.append(f"| {name} | {format_ci(evaluation[key]['auc'])} |")
    verdict = "clearly beats" if evaluation.get("beats_baseline") else "does NOT clearly beat"
    return lines + ["", f"The adapted head {verdict} the baseline ({evaluation.get('rule', '')}). The numbers are "
                        "from the adaptation images themselves (cross-validated): check on images not used here "
                        "before relying on them. Details: `adapt_report.md`."]


def _model_line(bundle: dict) -> str:
    """What was trained: the backbone (bundles before issue 24 name none: DenseNet121) and, for a distilled run,
    its teacher."""
    hp, teacher = bundle.get("hparams") or {}, bundle.get("distillation") or {}
    tail = hp.get("finetune_from", "conv5")
    tuned = "head only trained" if tail == "none" else f"head + `{tail}` onwards fine-tuned"
    line = f"{bundle.get('model', 'DenseNet121')} (backbone `{bundle.get('backbone', 'densenet121')}`, ImageNet-initialised, {tuned})"
    if teacher:
        line += (f", distilled from {teacher.get('model', '?')} `{Path(str(teacher.get('run', '?'))).name}` "
                 f"(alpha {teacher.get('alpha')}, T {teacher.get('temperature')}; its logits on training images only)")
    return line


def render_model_card(run_dir: str | Path) -> str:
    """The card's Markdown for a run folder (raises ValueError when bundle.json is missing or unreadable)."""
    run = Path(run_dir)
    bundle = _read_json(run / "bundle.json")
    if not isinstance(bundle, dict):
        raise ValueError(f"{run}: no readable bundle.json")
    data, thresholds = bundle.get("data") or {}, bundle.get("thresholds") or {}
    hp, predictions = bundle.get("hparams") or {}, _read_json(run / "predictions.json") or {}
    check = data.get("check") or {}
    synthetic = " (SYNTHETIC images: the numbers say nothing about radiographs)" if data.get("synthetic") else ""
    lines = [f"# Model card: {bundle.get('model', 'fracture classifier')} ({run.name})", "",
             f"_Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by fracture-edge from this run folder's files; "
             "`export`, `bench` and `eval --shifts` render it again._", "",
             "## Intended use", "",
             "Research and engineering aid that flags possible fractures on adult limb radiographs (hand, leg, hip, "
             "shoulder, as in FracAtlas). Output: P(fractured) and a decision at two operating points "
             "(balanced = highest F1 on validation; screening = sensitivity >= 95 % on validation).", "", NOT_A_DEVICE, "",
             "## Model", "",
             f"{_model_line(bundle)}, input {hp.get('size', '?')} px; "
             f"training options: `{json.dumps({k: hp[k] for k in ('views', 'augment', 'finetune_from', 'finetune_epochs', 'seed') if k in hp})}`. "
             f"Thresholds chosen on {thresholds.get('chosen_on', 'val')}: balanced {thresholds.get('balanced', float('nan')):.3f}, "
             f"screening {thresholds.get('screening', float('nan')):.3f}.", "",
             "## Data", "",
             f"Source: `{data.get('source', '?')}`{synthetic}.", "",
             "| split | images | fractured |", "|---|---|---|"]
    lines += [f"| {name} | {s.get('images')} | {s.get('fractured')} |" for name, s in (data.get("splits") or {}).items()]
    pairs = check.get("exact_pairs", {}), check.get("near_pairs", {})
    leaks = check.get("leaks") if isinstance(check.get("leaks"), dict) else {}
    lines += ["", f"Leakage check: {leaks.get('total', '?')} val/test image(s) with a copy in "
                  f"train; exact pairs across splits {pairs[0].get('across_splits', '?')}, near pairs across splits "
                  f"{pairs[1].get('across_splits', '?')}, near pairs within a split {pairs[1].get('within_split', '?')}.", "",
              "## Preprocessing contract", "", "```json", json.dumps(bundle.get("input", {})), "```", "",
              "## Performance on the test split (95 % CI: stratified bootstrap, 2,000 resamples)", ""]
    test = predictions.get("test") or {}
    y, p = np.asarray(test.get("targets", []), dtype=np.int64), np.asarray(test.get("probabilities", []), dtype=np.float64)
    has_test = y.size and 0 < y.sum() < y.size
    lines += _metrics_section(y, p, thresholds) if has_test else ["predictions.json has no usable test predictions."]
    if bundle.get("adapted_head"):
        lines += ["", "## Adaptation to a new site (fracture-edge adapt)", ""] + _adaptation_section(run, bundle)
    lines += ["", "## Subgroups (test, balanced threshold)", ""]
    if has_test:
        lines += _subgroup_section(test.get("paths", []), y, p, _split_rows(data.get("source")), thresholds["balanced"])
    lines += ["", "## Acquisition shifts", ""] + _shift_section(run)
    lines += ["", "## Exported artifacts: fidelity to the Keras model", ""] + _export_section(run)
    lines += ["", "## Where it looks: heatmaps on FracAtlas' fracture boxes", ""] + _heatmap_section(run)
    lines += ["", "## Speed", ""] + _speed_section(run)
    lines += ["", "## Known failure modes", "",
              "- Trained on one public dataset; images from other hospitals, devices or post-processing can differ in "
              "ways that make the model much worse (see the shift table above, and check before use).",
              "- Decisions close to a threshold can flip under tiny input changes (re-encoding, resizing, quantization).",
              "- Images with orthopaedic hardware, unusual views and body regions outside the list above are "
              "under-represented; see the subgroup table.",
              "", "## What a site must check before use", "",
              "1. Score at least a few hundred of its own labelled images (`fracture-edge eval RUN --data SITE`) and "
              "compare AUC, sensitivity and specificity with this card.",
              "2. Check polarity, orientation, cropping, burned-in markers and image size against the shift table.",
              "3. Re-choose the operating point on its own images; never trust these thresholds elsewhere unchecked.",
              "4. Deploy only artifacts that passed export verification (`fracture-edge info RUN` checks their hashes).",
              "5. Monitor decisions against the final reads and re-evaluate after any change of device or software.", ""]
    return "\n".join(lines)


def write_model_card(run_dir: str | Path) -> Path | None:
    """Render and atomically write RUN/model_card.md; logs and returns None when it cannot (never fatal)."""
    run = Path(run_dir)
    try:
        text = render_model_card(run)
        path = atomic.write_text(run / CARD_FILENAME, text)
    except (ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as exc:
        log.warning("%s: model card not written: %s", run, exc)
        return None
    log.info("model card: %s", path)
    return path
