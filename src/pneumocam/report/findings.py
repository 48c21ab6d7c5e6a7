"""The report's sections about the maps and the statistics: importance scores, ground-truth masks, where the
model looks, trust, and the conclusion. One pure function per section, from results.json."""

from __future__ import annotations

from pneumocam import CLASS_NAMES, started_random
from pneumocam.analysis.stats import format_number, format_p
from pneumocam.core.schema import REGION_TEXT, REGIONS
from pneumocam.report.document import Banner, Figure, FigureRow, Section, Table
from pneumocam.report.text import (
    ORIGINAL_SCORE,
    decided_at,
    figure,
    fmt,
    headline_threshold,
    independent_evidence,
    leakage_found,
    lung_verdict,
)


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
                f"{format_number(s['cohens_d'], '.2f')} ({s['effect_size_label']})",
                f"{format_p(a['welch']['p'])}, d {format_number(a['cohens_d'], '.2f')}",
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
                    fmt(v["mean_mass_share"]),
                    fmt(v["mean_area_share"]),
                    fmt(v["pointing_game_hit_rate"]),
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

    att = results.get("attention")
    if not att:
        return None
    sec = Section("Where does the model look?")
    against = results.get("trained_against")
    if against and against.get("explanation") == "gradcam" and results.get("cam", {}).get("method") == "gradcam":
        sec.add(
            Banner(
                f"Trained against: this model's training penalised Grad-CAM mass outside the lungs (weight "
                f"{against['weight']:g}), so these Grad-CAM region measures show that the map moved, not where the "
                "decision rests (not independent evidence). See 'What does the decision rest on?'.",
                "warning",
            )
        )
    independent = independent_evidence(results.get("independent_attention"))
    if independent:
        sec.add(independent)
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
    focus = results.get("focus") or {"mode": "none"}
    if focus["mode"] != "none":
        sec.add(
            f"The model reads its films focused on the {focus['mode']} (--focus {focus['mode']}: outside the "
            f"{'lungs' if focus['mode'] == 'lungs-only' else 'body'} neutral grey, cropped to the "
            f"{'body' if focus['mode'] == 'body' else 'lungs'} with a margin; the crop covers "
            f"{focus['mean_box_area_share']:.0%} of the film on average). Every map was put back where its crop lies "
            "on the whole film before these measures, so they compare with an unfocused model's on the same regions."
        )
    cells = results["cam"].get("input_map_shape") or results["cam"]["map_shape"]
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
        figure(figures or {}, "regions", "Mean share of map mass per region and class (hatched: share of image area)")
    )
    return sec.add(lung_verdict(att))


def guard_section(results: dict, figures: dict | None = None) -> Section | None:
    guard = results.get("guard")
    if not guard:
        return None
    sec = Section("Does each film look like the training films?")
    if not guard["fitted"]:
        sec.add(
            Banner(
                "This model carries no fitted domain-shift guard (trained before it existed): only the input checks "
                "ran. Fit one with `pneumocam guard fit --checkpoint MODEL --data DATA`.",
                "warning",
            )
        )
    else:
        fitted = guard["fitted_on"]
        shrinkage = fitted.get("shrinkage")
        combined = isinstance(shrinkage, list)  # model.guard.CombinedGuard of Mahalanobis parts (format 3)
        measured = (
            f"sums, over {fitted['features']}, each part's log distance to its k-th nearest of the {fitted['n_train']} "
            "training films (Sun et al. 2022), standardised by its mean and spread on validation"
            if fitted.get("method") == "nearest neighbours"
            else f"sums, over {fitted['features']}, each part's log Mahalanobis distance to the nearest class mean of "
            f"the {fitted['n_train']} training films (a shared Ledoit-Wolf covariance per part, shrinkage "
            f"{', '.join(f'{v:.2f}' for v in shrinkage)}), standardised by its mean and spread on validation"
            if combined
            else f"measures the Mahalanobis distance of each film's {fitted.get('features', 'pooled features')} to "
            f"the nearest class mean of the {fitted['n_train']} training films (shared Ledoit-Wolf covariance, "
            f"shrinkage {shrinkage:.2f})"
        )
        sec.add(
            f"The guard {measured}; the threshold {guard['threshold']:.1f} lets "
            f"{fitted['coverage']:.0%} of the {fitted['n_val']} validation films through. Input checks come first: "
            "colour picture, aspect ratio, very small or near-blank image. A film from another population that "
            "looks alike can still pass."
        )
    by_class = guard["share_flagged_by_class"]
    sec.add(
        f"Flagged: {guard['n_flagged']} films ({guard['share_flagged']:.1%}); NORMAL {fmt(by_class['NORMAL'])}, "
        f"PNEUMONIA {fmt(by_class['PNEUMONIA'])}. Reasons: {guard['reasons'] or 'none'}. Flagged films keep their "
        "probability in predictions.csv; "
        + (
            "they are included in the group statistics (--include-ood)."
            if results["config"].get("include_ood")
            else "they are left out of the group statistics (--include-ood keeps them)."
        )
    )
    key = headline_threshold(results)
    kept = (guard.get("metrics_in_distribution") or {}).get(key)
    if kept and kept.get("roc_auc") is not None:
        sec.add(
            f"On the {kept['n']} films that passed: accuracy at the decision threshold {decided_at(results)} "
            f"{fmt(kept['accuracy'])}, ROC-AUC {fmt(kept['roc_auc'])} (all films: "
            f"{fmt(results['metrics'][key]['accuracy'])}, {fmt(results['metrics'][key]['roc_auc'])})."
        )
    return sec.add(figure(figures or {}, "ood", "The films least like the training films, with the guard's reason"))


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
            [[r["randomised_up_to"], fmt(r["spearman_mean"]), fmt(r["ssim_mean"])] for r in rand["cascade"]],
            f"Model-parameter randomisation ({rand['method']}, {rand['n_images']} images, seed {rand['seed']})",
        )
    )
    faith = trust["faithfulness"]
    sec.add(
        Table(
            ["maps", "deletion AUC (lower is better)", "insertion AUC (higher is better)"],
            [[k, fmt(faith[k]["deletion_auc"]), fmt(faith[k]["insertion_auc"])] for k in ("maps", "random")],
            f"Faithfulness on {faith['n_images']} images, {faith['steps']} steps, baseline {faith['baseline']}",
        )
    )
    beat = faith["maps_beat_random"]
    sec.add(
        f"The maps beat random maps on deletion: {'yes' if beat['deletion'] else 'no'}; on insertion: "
        f"{'yes' if beat['insertion'] else 'no'}."
    )
    return sec.add(
        figure(figures or {}, "trust", "Randomisation cascade (left) and deletion / insertion curves (right)")
    )


def conclusion_section(results: dict, figures: dict | None = None) -> Section:
    prov, m = results["provenance"], results["metrics"][headline_threshold(results)]
    statistics = results.get("statistics") or {}
    sec = Section("Conclusion and its limits")
    sec.add(
        f"On the '{prov['eval_split']}' split ({m['n']} images) the classifier reached ROC-AUC {fmt(m['roc_auc'])} "
        "and accuracy "
        f"{fmt(m['accuracy'])} at its decision threshold {decided_at(results)}."
    )
    for name in (ORIGINAL_SCORE, "mean_raw"):
        entry = statistics.get(name, {})
        if "sample" not in entry:
            continue
        s = entry["sample"]
        d = s["cohens_d"] if s["cohens_d"] is not None and s["cohens_d"] == s["cohens_d"] else 0.0
        direction = "higher than" if d > 0 else "lower than" if d < 0 else "no differently from"
        verdict = "a difference" if s["reject_null"] else "no significant difference"
        text = (
            f"{name}: in the random {s['groups']['NORMAL']['n']} vs {s['groups']['PNEUMONIA']['n']} sample, PNEUMONIA "
            "images scored "
            f"{direction} NORMAL (Cohen's d {format_number(s['cohens_d'], '.2f')}, {s['effect_size_label']}); "
            "Welch's test finds "
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
    if started_random(prov.get("weights") or {}):
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
