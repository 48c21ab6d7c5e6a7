"""The report's sections: one pure function per section, from results.json (and the run's figure files).

Every number shown comes from `results` (see docs/results.md for its layout); nothing here touches a model
or the data, so a run folder copied to another machine renders the same report.
"""

from __future__ import annotations

from .. import CLASS_NAMES
from ..stats import format_p
from .document import Banner, Figure, FigureRow, Section, Table

ORIGINAL_SCORE = "mean_maxnorm"


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _figure(figures: dict, key: str, caption: str) -> Figure | None:
    return Figure(figures[key], caption) if key in figures else None


def headline_threshold(results: dict) -> str:
    """The threshold a decision uses: the validation-chosen one when recorded, else 0.5."""
    return "threshold_youden_val" if "threshold_youden_val" in results["metrics"] else "threshold_0.5"


def leakage_box(leakage: dict | None) -> Banner:
    """Always visible: whether any evaluated image (or its patient) was used to train or select the model."""
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
    if "threshold_youden_val" not in results["metrics"]:
        return "One threshold: 0.5 (the checkpoint records no validation-chosen threshold)."
    described = (results.get("thresholds") or {}).get("threshold_youden_val", "Youden's J on the validation split")
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


def _statistics_verdict(statistics: dict) -> str | None:
    parts = []
    for name in (ORIGINAL_SCORE, "mean_raw"):
        entry = statistics.get(name, {})
        if "sample" not in entry:
            continue
        s = entry["sample"]
        found = "differs" if s["reject_null"] else "does not differ significantly"
        text = f"{name} {found} between the classes (Welch p = {format_p(s['welch']['p'])}, d = {s['cohens_d']:.2f})"
        if entry.get("resampled"):
            text += f"; {entry['resampled']['share_p_below_alpha']:.0%} of resampled draws reach p < {s['alpha']}"
        parts.append(text)
    return "; ".join(parts) + "." if parts else None


def summary_section(results: dict, figures: dict | None = None) -> Section:
    """What a reader needs first: the headline numbers, the verdicts, and every warning."""
    prov, metrics = results["provenance"], results["metrics"]
    weights = prov.get("weights") or {}
    sec = Section("Summary")
    if prov.get("synthetic_data"):
        sec.add(
            Banner(
                "SYNTHETIC DATA: every image here is a generated phantom, not a patient's film. "
                "Nothing in this report is a clinical finding.",
                "danger",
            )
        )
    if weights.get("source") == "none":
        sec.add(
            Banner(
                "RANDOM INITIALISATION: this model started from random weights, not ImageNet. "
                "Accuracy and heatmaps are not those of the original (ImageNet) protocol.",
                "danger",
            )
        )
    sec.add(leakage_box(results.get("leakage")))
    empty = results.get("empty_maps") or {}
    if empty.get("n"):
        sec.add(
            Banner(f"{empty['n']} empty maps (no positive value): left out of the scores and statistics.", "warning")
        )
    key = headline_threshold(results)
    m = metrics[key]
    ci = m.get("roc_auc_ci95")
    rows = [
        [
            "ROC-AUC",
            _fmt(m["roc_auc"]) + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}, by {m.get('roc_auc_ci_unit')})" if ci else ""),
        ],
        [
            f"accuracy / sensitivity / specificity at {key} = {m['threshold']:.3f}",
            f"{_fmt(m['accuracy'])} / {_fmt(m['sensitivity'])} / {_fmt(m['specificity'])}",
        ],
        ["evaluated", f"split '{prov['eval_split']}', {m['n']} images"],
    ]
    if results.get("attention"):
        rows.append(["where it looks", lung_verdict(results["attention"]).removeprefix("In plain words: ")])
    trust = results.get("trust")
    if trust:
        beat = trust["faithfulness"]["maps_beat_random"]
        rows.append(
            [
                "trust",
                f"{trust['randomisation']['verdict']} Maps beat random maps on deletion: "
                f"{'yes' if beat['deletion'] else 'no'}, on insertion: {'yes' if beat['insertion'] else 'no'}.",
            ]
        )
    verdict = _statistics_verdict(results.get("statistics") or {})
    if verdict:
        rows.append(["statistics", verdict])
    return sec.add(Table(["", ""], rows, "At a glance"))


def provenance_section(results: dict, figures: dict | None = None) -> Section:
    prov = results["provenance"]
    weights = prov.get("weights") or {}
    sec = Section("What this report is")
    sec.add(
        f"Data: {prov['data']} (evaluated split: {prov['eval_split']}, fingerprint {prov['eval_fingerprint']}). "
        f"Weights: {weights.get('description', 'unknown')}. Seed: {prov['seed']}. Image size: {prov['image_size']} px. "
        f"Checkpoint: {prov['checkpoint']}. Command: {prov['command']}"
    )
    return sec.add(Table(["library", "version"], [[k, v] for k, v in prov["versions"].items()], "Versions"))


def data_section(results: dict, figures: dict | None = None) -> Section:
    prov, m05 = results["provenance"], results["metrics"]["threshold_0.5"]
    sec = Section("Data and splits")
    tdata = prov.get("training_data") or {}
    plan = tdata.get("validation") or {}
    if plan:
        sec.add(
            Table(
                ["item", "value"],
                [
                    ["validation source", plan.get("source")],
                    ["why", plan.get("reason")],
                    ["grouped by", plan.get("grouping")],
                    [
                        "train images / patients",
                        f"{plan.get('n_train_used', plan.get('n_train'))} / {plan.get('patients_train')}",
                    ],
                    [
                        "validation images / patients",
                        f"{plan.get('n_val_used', plan.get('n_val'))} / {plan.get('patients_val')}",
                    ],
                    [
                        "validation share requested / carved",
                        f"{_fmt(plan.get('fraction'))} / {_fmt(plan.get('actual_fraction'))}",
                    ],
                    ["patients in both", plan.get("shared_patients")],
                    ["training data fingerprint", tdata.get("fingerprint")],
                ],
                "Training and validation split",
            )
        )
    sec.add(
        f"Evaluated split '{prov['eval_split']}': {m05['n']} images "
        f"({m05['per_class']['NORMAL']['support']} NORMAL, {m05['per_class']['PNEUMONIA']['support']} PNEUMONIA)."
    )
    skipped = results["skipped"]
    return sec.add(
        Table(
            ["file", "reason"],
            [[s["path"], s["reason"]] for s in skipped[:200]],
            f"Skipped files ({len(skipped)}; full list in skipped.csv)",
        )
        if skipped
        else "No file was skipped."
    )


def training_section(results: dict, figures: dict | None = None) -> Section | None:
    tr = results.get("training")
    if not tr:
        return None
    cfg = results["config"]["train"]
    sec = Section("Training")
    sec.add(
        f"Mode {cfg['mode']}, {cfg['epochs']} epochs, batch {cfg['batch_size']}, AdamW lr {cfg['lr']}, schedule "
        f"{cfg['schedule']}, "
        f"class weights {cfg['class_weights']}, weighted sampler {'on' if cfg.get('weighted_sampler') else 'off'}, "
        f"augmentation {'on' if cfg['augment'] else 'off'}. Best epoch on validation ({tr['select_by']}): "
        f"{tr['best_epoch']}."
    )
    sec.add(
        Table(
            ["epoch", "train loss", "train acc", "val loss", "val AUC", "val acc"],
            [
                [
                    h["epoch"],
                    _fmt(h["train_loss"], 4),
                    _fmt(h["train_acc"]),
                    _fmt(h["val_loss"], 4),
                    _fmt(h["val_auc"]),
                    _fmt(h["val_acc"]),
                ]
                for h in tr["history"]
            ],
        )
    )
    return sec.add(_figure(figures or {}, "training", "Loss, AUC and accuracy per epoch"))


def metrics_section(results: dict, figures: dict | None = None) -> Section:
    figures = figures or {}
    sec = Section("Classification metrics")
    sec.add("Predictions are joined to labels by file path. " + threshold_sentence(results))
    for name, m in results["metrics"].items():
        rows = [
            [c, _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), r["support"]] for c, r in m["per_class"].items()
        ]
        rows += [
            [avg, _fmt(m[key]["precision"]), _fmt(m[key]["recall"]), _fmt(m[key]["f1"]), m[key]["support"]]
            for avg, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg"))
        ]
        sec.add(Table(["class", "precision", "recall", "f1", "support"], rows, f"{name} = {m['threshold']:.3f}"))
        ci, unit = m["roc_auc_ci95"], m.get("roc_auc_ci_unit") or "image"
        sec.add(
            f"{name}: accuracy {_fmt(m['accuracy'])}, sensitivity {_fmt(m['sensitivity'])}, specificity "
            f"{_fmt(m['specificity'])}, "
            f"ROC-AUC {_fmt(m['roc_auc'])}"
            + (f" (95% bootstrap CI {ci[0]:.3f}-{ci[1]:.3f}, resampling by {unit})" if ci else "")
            + f", mean loss {_fmt(m['mean_loss'], 4)}."
        )
    row = [
        f
        for f in (
            _figure(figures, "roc", "ROC curve on the evaluated split"),
            _figure(figures, "confusion", "Confusion matrix at threshold 0.5"),
        )
        if f
    ]
    return sec.add(FigureRow(row) if row else None)


def heatmaps_section(results: dict, figures: dict | None = None) -> Section:
    cam = results["cam"]
    sec = Section("Grad-CAM heatmaps")
    sec.add(
        f"Method {cam['method']} on {cam['layer']} (map {cam['map_shape'][0]}x{cam['map_shape'][1]}, upsampled for "
        "display), "
        f"explaining the {'predicted' if cam['target'] == 'pred' else cam['target']} class. Maps are "
        + (
            "normalised per image by pytorch-grad-cam."
            if cam.get("normalised_by_library")
            else "raw (after ReLU, not rescaled)."
        )
    )
    figure = _figure(
        figures or {}, "heatmaps", "Random NORMAL and PNEUMONIA films beside their overlays (red titles: misclassified)"
    )
    return sec.add(figure or "The heatmap grid needs the films themselves; it was not in this run folder.")


def statistics_section(results: dict, figures: dict | None = None) -> Section:
    figures, statistics = figures or {}, results["statistics"]
    sec = Section("Importance scores and statistics")
    sec.add(
        "Each map becomes one number per image. The original write-up used the mean of the map after dividing it by "
        "its own "
        "maximum (mean_maxnorm). After that division every map peaks at 1, so the score measures how spread out the "
        "map is, "
        "not how strongly the model relies on a region; mean_raw keeps the strength and top10_mass measures "
        "concentration. "
        "All differences are PNEUMONIA minus NORMAL."
    )
    notes = results.get("statistics_notes", {})
    if "n_per_class" in notes:
        sec.add(Banner(notes["n_per_class"], "warning"))
    empty = results.get("empty_maps") or {}
    if empty.get("n"):
        sec.add(
            Banner(
                f"Empty maps: {empty['n']} (NORMAL {empty['by_class']['NORMAL']}, PNEUMONIA "
                f"{empty['by_class']['PNEUMONIA']}): "
                "no positive value survived the ReLU. They are not scored 0 and not counted as pointing-game misses; "
                "they are left out of every statistic below.",
                "warning",
            )
        )
    else:
        sec.add("Empty maps (no positive value after the ReLU): 0.")
    if results["cam"].get("normalised_by_library"):
        sec.add(
            Banner(
                f"The {results['cam']['method']} maps come from pytorch-grad-cam already normalised per image, so no "
                "raw "
                "score exists for them: mean_raw is left out (n/a).",
                "warning",
            )
        )
    rows = []
    for name, entry in statistics.items():
        if "error" in entry:
            rows.append([name, entry["error"], "", "", "", "", "", ""])
            continue
        s, a = entry["sample"], entry["all_images"]
        share = (entry.get("resampled") or {}).get("share_p_below_alpha")
        rows.append(
            [
                name,
                f"{s['groups']['NORMAL']['mean']:.4g} / {s['groups']['PNEUMONIA']['mean']:.4g}",
                format_p(s["student"]["p"]),
                format_p(s["welch"]["p"]),
                format_p(s["mannwhitney"]["p"]),
                f"{s['cohens_d']:.2f} ({s['effect_size_label']})",
                f"{format_p(a['welch']['p'])}, d {a['cohens_d']:.2f}",
                "n/a" if share is None else f"{share:.0%}",
            ]
        )
    sec.add(
        Table(
            [
                "score",
                "mean N / P (sample)",
                "Student p",
                "Welch p",
                "Mann-Whitney p",
                "Cohen's d",
                "all images: Welch p, d",
                "draws with p < alpha",
            ],
            rows,
            "Random-sample tests (the original protocol), every image, and resampled draws",
        )
    )
    for prefix in ("scores_", "pvalues_"):
        row = [Figure(figures[k], k.replace("_", " ", 1)) for k in sorted(figures) if k.startswith(prefix)]
        sec.add(FigureRow(row) if row else None)
    return sec


def ground_truth_section(results: dict, figures: dict | None = None) -> Section | None:
    if not results.get("ground_truth"):
        return None
    sec = Section("Where the maps fall (ground-truth masks)")
    sec.add(
        Table(
            ["region", "images", "mean share of map mass", "mean share of image area", "pointing-game hit rate"],
            [
                [
                    k,
                    v["images_with_mask"],
                    _fmt(v["mean_mass_share"]),
                    _fmt(v["mean_area_share"]),
                    _fmt(v["pointing_game_hit_rate"]),
                ]
                for k, v in results["ground_truth"].items()
            ],
        )
    )
    return sec.add(
        "A map that ignored the region would put about its area share of mass inside it; more means the map "
        "concentrates there."
    )


def attention_section(results: dict, figures: dict | None = None) -> Section | None:
    from ..regions import REGION_TEXT, REGIONS

    att = results.get("attention")
    if not att:
        return None
    sec = Section("Where does the model look?")
    if att["estimated"]:
        sec.add(
            Banner(
                f"Lung fields ESTIMATED for some images (no mask given): {att['lung_sources']}. Shares that use them "
                "are "
                "estimates too.",
                "warning",
            )
        )
    sec.add(
        "Each map's mass is split over four disjoint regions: "
        + "; ".join(f"{r}: {REGION_TEXT[r]}" for r in REGIONS)
        + ". The ratio divides a region's share of the mass by its share of the image area: a uniform map scores 1.0 "
        "everywhere, "
        "more than 1 means the map concentrates there."
    )
    rows = [
        [
            cls,
            r,
            f"{att['mean_share_by_class'][cls][r]:.1%}",
            f"{att['mean_area_by_class'][cls][r]:.1%}",
            f"{att['mean_ratio_by_class'][cls][r]:.2f}",
        ]
        for cls in CLASS_NAMES
        for r in REGIONS
    ]
    sec.add(Table(["class", "region", "mean share of map mass", "mean share of area", "mean ratio"], rows))
    sec.add(
        "Pointing game (map maximum inside the lungs; empty maps left out): NORMAL "
        f"{att['pointing_lungs_by_class']['NORMAL']:.0%}, "
        f"PNEUMONIA {att['pointing_lungs_by_class']['PNEUMONIA']:.0%}."
    )
    cells = results["cam"]["map_shape"]
    if min(cells) < 7:
        sec.add(
            Banner(
                f"The maps have only {cells[0]}x{cells[1]} cells at this image size: their maximum can only fall on a "
                "cell "
                "centre or the border, so the pointing game says little here. Use 224 px inputs (7x7 maps) for it.",
                "warning",
            )
        )
    sec.add(
        _figure(figures or {}, "regions", "Mean share of map mass per region and class (hatched: share of image area)")
    )
    return sec.add(lung_verdict(att))


def trust_section(results: dict, figures: dict | None = None) -> Section | None:
    trust = results.get("trust")
    if not trust:
        return None
    sec = Section("Is the explanation trustworthy?")
    rand = trust["randomisation"]
    sec.add(Banner(rand["verdict"], "danger" if rand["flagged"] else "info"))
    sec.add(
        Table(
            ["weights randomised up to", "Spearman (raw maps)", "SSIM (normalised maps)"],
            [[r["randomised_up_to"], _fmt(r["spearman_mean"]), _fmt(r["ssim_mean"])] for r in rand["cascade"]],
            f"Model-parameter randomisation ({rand['method']}, {rand['n_images']} images, seed {rand['seed']})",
        )
    )
    faith = trust["faithfulness"]
    sec.add(
        Table(
            ["maps", "deletion AUC (lower is better)", "insertion AUC (higher is better)"],
            [[k, _fmt(faith[k]["deletion_auc"]), _fmt(faith[k]["insertion_auc"])] for k in ("maps", "random")],
            f"Faithfulness on {faith['n_images']} images, {faith['steps']} steps, baseline {faith['baseline']}",
        )
    )
    beat = faith["maps_beat_random"]
    sec.add(
        f"The maps beat random maps on deletion: {'yes' if beat['deletion'] else 'no'}; on insertion: "
        f"{'yes' if beat['insertion'] else 'no'}."
    )
    return sec.add(
        _figure(figures or {}, "trust", "Randomisation cascade (left) and deletion / insertion curves (right)")
    )


def conclusion_section(results: dict, figures: dict | None = None) -> Section:
    prov, m = results["provenance"], results["metrics"]["threshold_0.5"]
    statistics = results.get("statistics") or {}
    sec = Section("Conclusion and its limits")
    sec.add(
        f"On the '{prov['eval_split']}' split ({m['n']} images) the classifier reached ROC-AUC {_fmt(m['roc_auc'])} "
        "and accuracy "
        f"{_fmt(m['accuracy'])} at threshold 0.5."
    )
    for name in (ORIGINAL_SCORE, "mean_raw"):
        entry = statistics.get(name, {})
        if "sample" not in entry:
            continue
        s = entry["sample"]
        direction = "higher" if s["cohens_d"] > 0 else "lower"
        verdict = "a difference" if s["reject_null"] else "no significant difference"
        text = (
            f"{name}: in the random {s['groups']['NORMAL']['n']} vs {s['groups']['PNEUMONIA']['n']} sample, PNEUMONIA "
            "images scored "
            f"{direction} than NORMAL (Cohen's d {s['cohens_d']:.2f}, {s['effect_size_label']}); Welch's test finds "
            f"{verdict} "
            f"at alpha {s['alpha']} (p = {format_p(s['welch']['p'])})."
        )
        if entry.get("resampled"):
            text += (
                f" Over {entry['resampled']['n_draws']} other random draws of the same size, "
                f"{entry['resampled']['share_p_below_alpha']:.0%} reach p < {s['alpha']}: one draw alone is not a "
                "reliable answer."
            )
        sec.add(text)
    limits = [
        "Limits: a Grad-CAM map on layer4 is coarse (one value per 32x32 pixel block) and shows where the "
        "gradient-weighted "
        "features are, not why; a difference in scores between classes is an association, not evidence that the model "
        "uses pathology."
    ]
    if (prov.get("weights") or {}).get("source") == "none":
        limits.append(
            "The model was trained from random weights, so its maps do not speak for an ImageNet-pretrained model."
        )
    if prov.get("synthetic_data"):
        limits.append("The data are synthetic phantoms: the result shows the pipeline works, nothing about patients.")
    if leakage_found(results.get("leakage")):
        limits.append(
            "Some evaluated images (or their patients) were seen in training or selection: these are not held-out "
            "results."
        )
    if results.get("attention"):
        sec.add(lung_verdict(results["attention"]))
        if results["attention"]["estimated"]:
            limits.append(
                "Some lung fields were estimated, not drawn: region shares on those images carry the estimate's error."
            )
    for name, gt in results.get("ground_truth", {}).items():
        if name == "marker" and gt["mean_mass_share"] is not None and gt["mean_area_share"]:
            ratio = gt["mean_mass_share"] / gt["mean_area_share"]
            sec.add(
                f"Shortcut check: the maps put {gt['mean_mass_share']:.1%} of their mass on the corner marker, which "
                "covers "
                f"{gt['mean_area_share']:.1%} of the image ({ratio:.1f} times a uniform share)"
                + (": the model is using the marker." if ratio > 2 else ".")
            )
    if (results.get("trust") or {}).get("randomisation", {}).get("flagged"):
        limits.append("The randomisation test flagged these maps: they barely depend on the trained weights.")
    return sec.add(" ".join(limits))


SECTIONS = (
    summary_section,
    provenance_section,
    data_section,
    training_section,
    metrics_section,
    heatmaps_section,
    statistics_section,
    ground_truth_section,
    attention_section,
    trust_section,
    conclusion_section,
)


def build_sections(results: dict, figures: dict | None = None) -> list[Section]:
    """Every section that applies to this run, in reading order."""
    return [s for s in (section(results, figures or {}) for section in SECTIONS) if s is not None]
