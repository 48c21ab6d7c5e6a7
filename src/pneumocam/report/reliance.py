"""The report's section on what the decision rests on (analysis/reliance.py's record): the variants' table, the
verdict, the rule, the controls and whether the map predicts the intervention."""

from __future__ import annotations

from pneumocam.report.document import Banner, Section, Table
from pneumocam.report.text import fmt

RELIANCE_LABELS = {
    "whole": "the film as it is",
    "lungs_removed_fill": "lungs removed (grey fill)",
    "only_lungs_fill": "only the lungs kept (grey fill)",
    "lungs_removed_impute": "lungs removed (imputed, ROAD)",
    "control_removed_fill": "a region of the lungs' shape elsewhere removed (control)",
    "lungs_removed_blur": "lungs removed (heavy blur)",
    "only_lungs_blur": "only the lungs kept (heavy blur)",
}


def reliance_section(results: dict, figures: dict | None = None) -> Section | None:
    rel = results.get("reliance")
    if not rel:
        return None
    sec = Section("What does the decision rest on?")
    level = "info" if rel["verdict"].startswith("the decision rests on the lungs") else "warning"
    sec.add(Banner(f"{rel['verdict'][0].upper()}{rel['verdict'][1:]}.", level))
    rows = []
    for name, label in RELIANCE_LABELS.items():
        v = rel["variants"].get(name)
        if v is None:  # a record from before the controls
            continue
        ci = v.get("roc_auc_ci95")
        kept = rel["share_of_ranking_kept"].get(name)
        rows.append(
            [
                label,
                fmt(v["mean_probability"]["NORMAL"]),
                fmt(v["mean_probability"]["PNEUMONIA"]),
                fmt(v["roc_auc"]) + (f" ({fmt(ci[0])}-{fmt(ci[1])})" if ci else ""),
                "" if kept is None else f"{kept:.0%}",
            ]
        )
    sec.add(
        Table(
            ["film", "mean p NORMAL", "mean p PNEUMONIA", "ROC-AUC (95% CI)", "ranking above chance kept"],
            rows,
            f"{rel['n_images']} films; intervals resample {rel['resampled_unit']}s; lungs: {rel['lung_sources']}",
        )
    )
    rule = rel["rule"]
    return sec.add(
        "The model's probability on each film with its lungs removed and with only its lungs kept, each region "
        "removed whole behind a feathered edge that lies outside it. This check reads no explanation map, so it "
        "is the same for every model, including one "
        "trained to please Grad-CAM. Rule: the decision rests on the lungs when removing them (grey fill) keeps at "
        f"most {rule['removed_at_most']:.0%} of the whole film's ranking above chance and keeping only them keeps "
        f"at least {rule['only_lungs_at_least']:.0%}; it rests largely outside them when keeping only the lungs "
        f"keeps under {rule['outside_below']:.0%}. Such films are unlike the training films: read the numbers as "
        "how the decision depends on each part, not as performance."
        + (
            f" Control: removing a region of the lungs' shape and area elsewhere on the body (mean overlap with the "
            f"lungs {rel['controls']['mean_overlap_with_lungs']:.0%}) must keep at least "
            f"{rule.get('control_margin', 0):.0%} more of the ranking than removing the lungs, or the verdict is "
            "mixed; the imputed removal (ROAD) shows whether the grey fill's outline alone moves the decision."
            if rel.get("controls")
            else ""
        )
        + _agreement_sentence(rel.get("map_agreement"))
    )


def _agreement_sentence(agreement: dict | None) -> str:
    if not agreement or agreement.get("spearman") is None:
        return ""
    tracks = "tracks" if agreement["tracks"] else "does not track"
    return (
        f" Does the map predict the intervention? {agreement['method']}'s lung share against the explained class's "
        f"probability drop with the lungs removed, per film: Spearman {agreement['spearman']:.2f} (p "
        f"{agreement['p']:.2g}, {agreement['n_films']} films): the map {tracks} what the decision does."
    )
