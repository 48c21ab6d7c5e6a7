"""Sentences and small helpers the report's sections share: number formatting, the leakage box, the threshold
sentence and the plain-words verdicts. Pure functions of results.json entries."""

from __future__ import annotations

from pneumocam import CLASS_NAMES
from pneumocam.analysis.stats import format_number, format_p
from pneumocam.core.schema import VALIDATION_KEY, decision_key
from pneumocam.report.document import Banner, Figure

ORIGINAL_SCORE = "mean_maxnorm"


def fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def figure(figures: dict, key: str, caption: str) -> Figure | None:
    return Figure(figures[key], caption) if key in figures else None


def headline_threshold(results: dict) -> str:
    """The metrics key of the threshold decisions use (core.schema.decision_key)."""
    return decision_key(results["metrics"])


def decided_at(results: dict) -> str:
    """The decision threshold with how it was chosen, for a sentence: "0.4123 (threshold_youden_val)"."""
    key = headline_threshold(results)
    return f"{fmt(float(results['metrics'][key]['threshold']), 4)} ({key})"


def foreign_model_banner(foreign: dict, weights: dict, guard: dict | None = None) -> Banner:
    """What a report says of a model pneumocam did not train (model.foreign's record), and what is unknown for it."""
    fitted = (guard or {}).get("fitted_on") or {}
    count = fitted.get("n_train", 0) + fitted.get("n_val", 0)
    said = (
        f"fitted on {fitted.get('films')} ({count} films the user named as in-distribution)"
        if fitted.get("films")
        else "the input checks only (no in-distribution films were named: --guard-films)"
    )
    return Banner(
        f"A MODEL PNEUMOCAM DID NOT TRAIN: {weights.get('description', 'unknown')}, its PNEUMONIA output "
        f"{foreign.get('output')!s} ({foreign.get('activation')}), maps on layer {foreign.get('layer')}. "
        f"Unknown for it: the films it was trained and selected on, its calibration. Its guard: {said}.",
        "warning",
    )


def shortcut_banner(shortcut: dict | None) -> Banner | None:
    """A warning when the label is predictable from the acquisition's traces alone (analysis/shortcut.py)."""
    if not shortcut or not shortcut.get("warning"):
        return None
    carried = ", ".join(c["feature"] for c in shortcut["carried_by"][:3])
    return Banner(
        f"SHORTCUT POSSIBLE: with no model, file size, format, intensity and border traces predict the label at "
        f"ROC-AUC {shortcut['roc_auc']:.3f} on these films (carried by {carried}). A model can score this well "
        "without reading the lungs; read the reliance check before the headline numbers.",
        "warning",
    )


def leakage_box(leakage: dict | None, foreign: bool = False) -> Banner:
    """Always visible: whether any evaluated image (or its patient) was used to train or select the model."""
    if foreign:
        return Banner(
            "Leakage unknown: pneumocam did not train this model, so the films it was trained and selected on are "
            "unknown and no check of the evaluated films against them is possible. Evaluate it on films you know it "
            "never saw.",
            "warning",
        )
    if not leakage or not leakage.get("recorded", True):
        return Banner(
            "Leakage not checked: this checkpoint does not record which images trained and selected it.", "warning"
        )
    counts = (
        f"images seen in training: {leakage['n_images_seen_in_training']}; in selection (epoch / threshold): "
        f"{leakage['n_images_seen_in_selection']}; patients shared with training: "
        f"{leakage['n_patients_shared_with_training']}; "
        f"with selection: {leakage['n_patients_shared_with_selection']}"
    )
    if leakage_found(leakage):
        return Banner(
            f"LEAKAGE: the evaluated split overlaps what the model saw ({counts}). The scores below are NOT held-out. "
            f"Examples: {', '.join(leakage['examples'])}. Full list in leakage.csv.",
            "danger",
        )
    return Banner(
        f"Leakage check passed on {leakage['n_images_evaluated']} evaluated images (content hash and patient id): "
        f"{counts}.",
        "info",
    )


def leakage_found(leakage: dict | None) -> bool:
    keys = (
        "n_images_seen_in_training",
        "n_images_seen_in_selection",
        "n_patients_shared_with_training",
        "n_patients_shared_with_selection",
    )
    return bool(leakage) and any(leakage.get(k) for k in keys)


def threshold_sentence(results: dict) -> str:
    """What the thresholds are and, truthfully, whether the validation one saw the evaluated images."""
    if VALIDATION_KEY not in results["metrics"]:
        return "One threshold: 0.5 (the checkpoint records no validation-chosen threshold)."
    described = (results.get("thresholds") or {}).get(VALIDATION_KEY, "Youden's J on the validation split")
    text = f"Two thresholds: 0.5, and threshold_youden_val ({described})"
    leakage = results.get("leakage") or {}
    if not leakage.get("recorded", True) or leakage.get("n_images_seen_in_selection") is None:
        return text + "; whether the validation split overlaps the evaluated one is unknown for this checkpoint."
    overlap = leakage["n_images_seen_in_selection"]
    if overlap:
        return text + (
            f"; the validation split shares {overlap} of its images with the evaluated split, so the threshold "
            "WAS chosen on evaluated images and its results are optimistic."
        )
    return text + ", never chosen on the evaluated split (no evaluated image was used for selection)."


def lung_verdict(att: dict) -> str:
    """Per class: does the map prefer the lungs, and how much of it lies outside the body?"""
    parts = []
    for cls in CLASS_NAMES:
        lungs = att["mean_ratio_by_class"][cls]["lungs"]
        outside = att["mean_ratio_by_class"][cls]["outside_body"]
        share_out = att["mean_share_by_class"][cls]["outside_body"]
        if lungs >= 1.2:
            text = f"for {cls} images the maps concentrate on the lungs ({lungs:.2f} times a uniform map's share)"
        elif lungs > 0.8:
            text = f"for {cls} images the maps show no preference for the lungs (ratio {lungs:.2f})"
        else:
            text = f"for {cls} images the maps avoid the lungs (only {lungs:.2f} times a uniform map's share)"
        if outside >= 1.0:
            text += (
                f" and put {share_out:.0%} of their mass outside the body, on the blank border, text and markers "
                f"({outside:.2f} times a uniform share): a sign of shortcut learning"
            )
        parts.append(text)
    return "In plain words: " + "; ".join(parts) + "."


def statistics_verdict(statistics: dict) -> str | None:
    parts = []
    for name in (ORIGINAL_SCORE, "mean_raw"):
        entry = statistics.get(name, {})
        if "sample" not in entry:
            continue
        s = entry["sample"]
        found = "differs" if s["reject_null"] else "does not differ significantly"
        welch, d = format_p(s["welch"]["p"]), format_number(s["cohens_d"], ".2f")
        text = f"{name} {found} between the classes (Welch p = {welch}, d = {d})"
        if entry.get("resampled"):
            text += f"; {entry['resampled']['share_p_below_alpha']:.0%} of resampled draws reach p < {s['alpha']}"
        parts.append(text)
    return "; ".join(parts) + "." if parts else None


def independent_evidence(independent: dict | None) -> str | None:
    """The occlusion maps' region measures of a model trained against its maps, as one sentence."""
    if not independent:
        return None
    ratio, share = independent["mean_ratio_by_class"], independent["mean_share_by_class"]
    pointing = independent.get("pointing_lungs_by_class") or {}
    return (
        "Independent evidence (a map the training did not penalise and that reads no gradient: occlusion "
        f"sensitivity, a {independent['settings']['window']} px grey window in steps of "
        f"{independent['settings']['stride']} px, on {independent['n_films']} random films): lung ratio "
        + ", ".join(
            f"{name} {ratio[name]['lungs']:.2f} (outside the body {share[name]['outside_body']:.1%}"
            + (f", pointing {pointing[name]:.0%})" if pointing.get(name) is not None else ")")
            for name in ratio
        )
        + "."
    )
