"""RUN/export_report.json and RUN/export_report.md: the whole table, one row per requested format."""
from __future__ import annotations

import math
from pathlib import Path

from ..edge_runtime import atomic
from ..edge_runtime.confidence import RATES, format_ci, format_difference
from .gates import finite_or_none
from .heatmap_check import report_lines
from ..edge_runtime.bundle_schema import THRESHOLD_NAMES

REPORT_SCHEMA = "fracture_edge.export_report/1"
JSON_NAME, MD_NAME = "export_report.json", "export_report.md"
COLUMNS = ("format", "status", "size MB", "export s", "verify s", "peak RSS MB", "sha256", "tflite-runtime 2.14",
           "F1 keras→artifact", "AUC keras→artifact", "sens", "spec", "agreement", "max |Δprob|", "verdict")


def report_dict(rows: list, context: dict) -> dict:
    return finite_or_none({"schema": REPORT_SCHEMA, **context, "ok": all(r.ok for r in rows),
                            "failed": [r.format for r in rows if not r.ok], "rows": [r.to_dict() for r in rows]})


def _num(value, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def table_cells(row) -> list[str]:
    """One Markdown table row; metrics at the bundle's balanced threshold."""
    gate = row.gate or {}
    balanced = (gate.get("per_threshold") or {}).get("balanced", {})
    size = None if row.bytes is None else row.bytes / 1e6
    f1 = f"{_num(balanced.get('f1_ref'), '.4f')}→{_num(balanced.get('f1'), '.4f')}" if balanced else "–"
    auc = f"{_num(gate.get('auc_ref'), '.4f')}→{_num(gate.get('auc'), '.4f')}" if gate else "–"
    verdict = "pass" if row.ok else f"{'rejected' if row.status == 'gate failed' else 'FAIL'}: {row.error}"
    return [row.format, row.status, _num(size, ".2f"), _num(row.seconds, ".0f"), _num(row.verify_seconds, ".0f"),
            _num(row.peak_rss_mb, ".0f"), (row.sha256 or "–")[:12], (row.compat or {}).get("verdict", "–"), f1, auc,
            _num(balanced.get("sensitivity"), ".3f"), _num(balanced.get("specificity"), ".3f"),
            _num(balanced.get("agreement"), ".2%"), _num(gate.get("max_abs_dprob"), ".2e"),
            verdict.replace("|", "\\|")]


def markdown(rows: list, context: dict) -> str:
    verification = context.get("verification") or {}
    lines = [f"# Export report: {context['run']}", "",
             f"{context['date']} · {context['seconds_total']:.0f} s total · "
             f"{'all formats passed' if all(r.ok for r in rows) else 'not passed: ' + ', '.join(r.format for r in rows if not r.ok)}",
             "", f"Verified on {verification.get('images')} images ({verification.get('fractured')} fractured) "
             f"from {verification.get('source')} through {verification.get('runtime')}; "
             "F1/sensitivity/specificity/agreement at the bundle's balanced threshold.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    lines += [line for note in mixed_int8_notes(rows) for line in ("", f"**Note:** {note}")]
    lines += deploy_lines(context.get("deploy"))
    lines += verdict_lines(rows, context["gates"])
    lines += uncertainty_lines(rows, context.get("keras_uncertainty"))
    lines += report_lines(rows, context.get("heatmaps"))
    lines += ["", "## Details", ""] + [line for r in rows for line in detail_lines(r)]
    lines += memory_lines(context.get("memory"))
    lines += ["", "Verdict rules: " + ", ".join(f"{k} {v}" for k, v in context["gates"].items())]
    calibration = context.get("calibration")
    if calibration:
        lines.append(f"Calibration: {calibration['calibration_images']} images "
                     f"({calibration['calibration_fractured']} fractured) from {calibration['calibration_source']}.")
    if context.get("android_assets"):
        lines.append(f"Android assets: {context['android_assets']}")
    return "\n".join(lines) + "\n"


def deploy_lines(deploy: dict | None) -> list[str]:
    if not deploy:
        return ["", "**Deploy:** no TFLite artifact passed its verdict."]
    return ["", f"**Deploy:** `{deploy['file']}` ({deploy['format']}), the first that passed of "
                f"{', '.join(deploy['order'])}."]


NI_COLUMNS = ("auc", "balanced sensitivity", "balanced specificity", "screening sensitivity", "screening specificity")


def verdict_lines(rows: list, rules: dict) -> list[str]:
    """The fidelity verdict of every compressed artifact: each non-inferiority interval and the noise floor."""
    judged = [r for r in rows if r.gate and r.gate.get("non_inferiority")]
    lines = ["", "## Fidelity verdict (docs/fidelity-verdict.md)", "",
             f"Compressed artifacts: the paired bootstrap 95 % CI ({rules.get('resamples')} stratified resamples, "
             f"seed {rules.get('seed')}) of artifact − Keras must lie above −margin (AUC {rules.get('margin_auc')}, "
             f"sensitivity {rules.get('margin_sensitivity')}, specificity {rules.get('margin_specificity')}, at "
             f"both thresholds), each class needs >= {rules.get('min_class_images')} images, and the decisions "
             "flipped at each threshold must be no more than the Keras model flips under a ±1 grey-level dither "
             "of the same images" + ("" if rules.get("noise_floor") else " (noise floor switched off)")
             + ". fp32 artifacts must be exact (max |Δp| <= " f"{rules.get('fp32_max_abs_dprob')})."]
    if not judged:
        return lines
    lines += ["", "| format | verdict | " + " | ".join(f"Δ {c} (95 % CI)" for c in NI_COLUMNS)
              + " | flips / dither flips, balanced | screening |", "|---|---|" + "---|" * (len(NI_COLUMNS) + 2)]
    for row in judged:
        tests, floor = row.gate["non_inferiority"], row.gate.get("noise_floor") or {}
        cells = [row.format, "pass" if row.ok else "rejected"]
        cells += [f"{'' if t['passed'] else '**'}{t['value']:+.4f} ({t['ci_low']:+.4f} to {t['ci_high']:+.4f})"
                  f"{'' if t['passed'] else '**'}" if (t := tests.get(c)) else "–" for c in NI_COLUMNS]
        cells += [floor_cell(floor.get(name)) for name in THRESHOLD_NAMES]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def floor_cell(entry: dict | None) -> str:
    if not entry:
        return "not measured"
    ratio = "–" if entry["ratio"] is None else f"{entry['ratio']:.2f}x"
    text = f"{entry['flips']} / {entry['dither_flips']} ({ratio})"
    return text if entry["passed"] else f"**{text}**"


def uncertainty_lines(rows: list, keras: dict | None) -> list[str]:
    """95 % CIs of every verified artifact's metrics at both thresholds, and its paired AUC test against Keras."""
    measured = [(r.format, r.uncertainty) for r in rows if r.uncertainty]
    if not measured:
        return []
    first = measured[0][1]["metrics"]
    lines = ["", "## Uncertainty (95 % CIs)", "",
             f"{first['method'].capitalize()}, {first['resamples']} resamples, on the verification images; "
             "AUC − Keras is paired (the same resamples for both), p two-sided. Reported, not gated.", "",
             "| format | AUC | AUC − Keras, p | threshold | " + " | ".join(RATES) + " |",
             "|---|---|---|---|" + "---|" * len(RATES)]
    for name, entry in ([("keras", keras)] if keras else []) + measured:
        metrics, vs = entry["metrics"], entry.get("auc_vs_reference")
        head = [name, format_ci(metrics["auc"]), "reference" if name == "keras" else
                format_difference(vs, 4) if vs else "–"]
        for point in THRESHOLD_NAMES:
            if point in metrics:
                cells = head + [point] + [format_ci(metrics[point][rate]) for rate in RATES]
                lines.append("| " + " | ".join(cells) + " |")
                head = ["", "", ""]
    return lines


def memory_lines(memory: dict | None) -> list[str]:
    """The time and memory of every stage, in the order the stages ended (nested ones first)."""
    if not memory:
        return []
    lines = ["", "## Time and memory per stage", "",
             f"Process peak RSS {memory['peak_rss_mb']:.0f} MB (the kernel's high-water mark, as `/usr/bin/time -v`"
             f" reports it); a stage's own peak is sampled every {memory['sampled_every_s']} s.", "",
             "| stage | within | s | RSS at end MB | stage peak MB | process peak so far MB |", "|---|---|--:|--:|--:|--:|"]
    lines += [f"| {s['name']} | {s['within'] or '–'} | {s['seconds']:.1f} | {_num(s['rss_end_mb'], '.0f')} | "
              f"{_num(s['stage_peak_mb'], '.0f')} | {s['process_peak_mb']:.0f} |" for s in memory["stages"]]
    return lines


def detail_lines(row) -> list[str]:
    out = [f"- **{row.format}** ({row.file}): {(row.compat or {}).get('reason', 'not checked')}"]
    kept = row.facts.get("kept_float")
    if kept:
        out.append(f"  - kept in float: {kept_float_line(kept)}")
    if row.facts.get("method"):
        out.append(f"  - method: {method_line(row.facts)}")
    census = row.facts.get("int8_ops")
    if census:
        out.append(f"  - {census_line(census)}")
    weights = row.facts.get("int8_weights")
    if weights:
        out.append(f"  - {dynamic_line(weights)}")
    if row.facts.get("bias_correction"):
        out.append(f"  - {bias_correction_line(row.facts['bias_correction'])}")
    quant = row.facts.get("quantization")
    if isinstance(quant, dict) and "input" in quant:
        q_in, q_out = quant["input"], quant["output"]
        out.append(f"  - input {q_in['dtype']} scale {q_in['scale']:.6g} zero point {q_in['zero_point']}"
                   f" (raw pixels exact: {quant.get('raw_pixels_exact', 'n/a')}); output {q_out['dtype']}"
                   f" scale {q_out['scale']:.6g} zero point {q_out['zero_point']}")
    if row.gate and "screening" in row.gate["per_threshold"]:
        s = row.gate["per_threshold"]["screening"]
        out.append(f"  - screening threshold: F1 {_num(s['f1_ref'], '.4f')}→{_num(s['f1'], '.4f')}, "
                   f"sensitivity {_num(s['sensitivity'], '.3f')}, agreement {_num(s['agreement'], '.2%')}")
    return out


def write_reports(run_dir: Path, rows: list, context: dict) -> tuple[Path, Path]:
    json_path = atomic.write_json(Path(run_dir) / JSON_NAME, report_dict(rows, context))
    md_path = atomic.write_text(Path(run_dir) / MD_NAME, markdown(rows, context))
    return json_path, md_path


def census_line(census: dict) -> str:
    """'integer except the classifier (FULLY_CONNECTED, LOGISTIC)' or which body ops are float."""
    head = ", ".join(census.get("float_ops_classifier") or {}) or "none"
    if census.get("integer_but_classifier"):
        return f"every op integer except the float classifier ({head}) and the QUANTIZE/DEQUANTIZE edges"
    body = ", ".join(f"{count} {op}" for op, count in (census.get("float_ops_body") or {}).items())
    return f"float ops before the classifier: {body}; classifier: {head}"


def dynamic_line(census: dict) -> str:
    """'int8 weights in 114 of 122 convolution/dense ops (97.6% of the weight bytes); activations float32 ...;
    float32 kept in 8 layers (...)'."""
    total = census["int8_weight_bytes"] + census["float_weight_bytes"]
    share = census["int8_weight_bytes"] / total if total else 0.0
    kept = census.get("float_weights") or []
    line = (f"int8 weights in {census['int8_weight_ops']} of {census['weighted_ops']} convolution/dense ops "
            f"({share:.1%} of the weight bytes); activations {census['activations']}")
    if not kept:
        return line
    layers = ", ".join(short_layer_name(name) for name in kept)
    line += f"; float32 weights kept in {len(kept)} layers ({layers})"
    if "mac_share_float" in census:
        line += (f", {census['mac_share_float']:.1%} of the multiply-adds, chosen on {census['chosen_on']} by "
                 f"their own int8 error: logit RMSE {census['logit_rmse']:.3f} vs all int8 "
                 f"{census['logit_rmse_all_int8']:.3f}")
    return line


def bias_correction_line(facts: dict) -> str:
    """'bias correction of the int8 weights: kept (logit RMSE 0.066, uncorrected 0.086, on ...)'."""
    shifts = facts.get("largest_shift_per_layer") or {}
    largest = max(shifts.items(), key=lambda kv: kv[1], default=None)
    where = f"; largest channel shift {largest[1]:.4f} ({short_layer_name(largest[0])})" if largest else ""
    return (f"bias correction of the int8 weights: {'kept' if facts['kept'] else 'not kept'} (logit RMSE "
            f"{facts['logit_rmse_corrected']:.4f} corrected vs {facts['logit_rmse_uncorrected']:.4f} uncorrected "
            f"on {facts['rmse_on']}; input means on {facts['input_means_on']}{where})")


def short_layer_name(tensor_name: str) -> str:
    """'fracture_densenet121_1/conv2_block1_1_relu_1/Relu' -> 'conv2_block1_1_relu_1'."""
    parts = tensor_name.split("/")
    return parts[1] if len(parts) > 1 else tensor_name


def method_line(facts: dict) -> str:
    """How the int8 weights were prepared and what it cost."""
    parts = [facts["method"]]
    if facts.get("equalized"):
        parts.append(f"channel equalization ({facts.get('equalization_seconds', 0):.0f} s)")
    if facts.get("qat_steps"):
        parts.append(f"{facts['qat_steps']} tuning steps on {facts['qat_images']} training images "
                     f"({facts['qat_seconds']:.0f} s), simulated int8 logit RMSE {facts['qat_logit_rmse_before']}"
                     f" -> {facts['qat_logit_rmse_after']}")
    return "; ".join(parts)


def kept_float_line(kept: dict) -> str:
    """'the first 104 of 313 ops (33.2 % float), through pool3_pool (rule ...)' or why nothing was kept."""
    if not kept.get("through"):
        return f"no float prefix met the search target ({kept.get('rule', '')})"
    share = kept.get("share_float", kept["ops"] / kept["of_ops"] if kept.get("of_ops") else 0.0)
    return (f"the first {kept['ops']} of {kept['of_ops']} ops ({share:.1%} float), through {kept['through']} "
            f"({kept['rule']})")


def mixed_int8_notes(rows: list) -> list[str]:
    """A warning for each passing int8 artifact that kept so much in float that it outweighs tflite-fp16."""
    fp16 = next((r.bytes for r in rows if r.format == "tflite-fp16" and r.ok and r.bytes), None)
    notes = []
    for row in rows:
        kept = row.facts.get("kept_float") or {}
        if row.ok and kept.get("through") and fp16 and row.bytes and row.bytes >= fp16:
            notes.append(f"{row.format} passed only with {kept['ops']} of {kept['of_ops']} ops in float and is "
                         f"{row.bytes / 1e6:.2f} MB, no smaller than tflite-fp16 ({fp16 / 1e6:.2f} MB): on this "
                         "model, deploy tflite-fp16 (or retrain for quantization).")
    return notes
