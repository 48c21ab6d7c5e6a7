"""The report's sections: one pure function per section, from results.json (and the run's figure files).

Every number shown comes from `results` (see docs/results.md for its layout); nothing here touches a model
or the data, so a run folder copied to another machine renders the same report.
"""

from __future__ import annotations

from pneumocam import started_random
from pneumocam.core.schema import FIXED_KEY
from pneumocam.report.document import Banner, FigureRow, Section, Table
from pneumocam.report.findings import (
    attention_section,
    conclusion_section,
    ground_truth_section,
    guard_section,
    statistics_section,
    trust_section,
)
from pneumocam.report.populations import populations_section
from pneumocam.report.reliance import reliance_section
from pneumocam.report.text import (
    decided_at,
    figure,
    fmt,
    foreign_model_banner,
    headline_threshold,
    leakage_box,
    lung_verdict,
    shortcut_banner,
    statistics_verdict,
    threshold_sentence,
)


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
    if started_random(weights):
        sec.add(
            Banner(
                "RANDOM INITIALISATION: this model started from random weights, not ImageNet. "
                "Accuracy and heatmaps are not those of the original (ImageNet) protocol.",
                "danger",
            )
        )
    foreign = prov.get("model")
    if foreign:
        sec.add(foreign_model_banner(foreign, weights, results.get("guard")))
    sec.add(leakage_box(results.get("leakage"), foreign=bool(foreign)))
    sec.add(shortcut_banner(results.get("shortcut")))  # None (nothing added) unless the label is in the traces
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
            fmt(m["roc_auc"]) + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}, by {m.get('roc_auc_ci_unit')})" if ci else ""),
        ],
        [
            f"accuracy / sensitivity / specificity at {key} = {m['threshold']:.3f}",
            f"{fmt(m['accuracy'])} / {fmt(m['sensitivity'])} / {fmt(m['specificity'])}",
        ],
        ["evaluated", f"split '{prov['eval_split']}', {m['n']} images"],
    ]
    if m.get("ece") is not None:
        cal = results.get("calibration") or {}
        rows.append(
            [
                "calibration",
                f"ECE {fmt(m['ece'])} on the evaluated split"
                + (
                    f" (temperature {cal['temperature']:.3f} fitted on validation)"
                    if cal.get("method") == "temperature"
                    else ""
                ),
            ]
        )
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
    verdict = statistics_verdict(results.get("statistics") or {})
    if verdict:
        rows.append(["statistics", verdict])
    return sec.add(Table(["", ""], rows, "At a glance"))


def precision_text(prov: dict) -> str:
    """The arithmetic of training and of this report's forward passes (runs before precision was recorded: fp32)."""

    def said(record) -> str:
        return f"{record['used']} ({record['reason']})" if record else "fp32 (not recorded: before --precision)"

    training, evaluation = said(prov.get("training_precision")), said(prov.get("precision"))
    return f"Precision: training {training}; evaluation and maps {evaluation}. "


def provenance_section(results: dict, figures: dict | None = None) -> Section:
    prov = results["provenance"]
    weights = prov.get("weights") or {}
    lineage = "".join(f"; {note}" for note in weights.get("notes") or [])  # e.g. what a model.pt started from
    sec = Section("What this report is")
    sec.add(
        f"Data: {prov['data']} (evaluated split: {prov['eval_split']}, fingerprint {prov['eval_fingerprint']}). "
        f"Weights: {weights.get('description', 'unknown')}{lineage}. Seed: {prov['seed']}. "
        f"Image size: {prov['image_size']} px. {precision_text(prov)}"
        f"Checkpoint: {prov['checkpoint']}. Command: {prov['command']}"
    )
    return sec.add(Table(["library", "version"], [[k, v] for k, v in prov["versions"].items()], "Versions"))


def data_section(results: dict, figures: dict | None = None) -> Section:
    prov, m05 = results["provenance"], results["metrics"][FIXED_KEY]
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
                        f"{fmt(plan.get('fraction'))} / {fmt(plan.get('actual_fraction'))}",
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
    if cfg.get("recipe") or cfg.get("size_schedule"):
        sec.add(
            f"Recipe: {cfg.get('recipe') or 'none (explicit options)'}; input size per epoch: "
            f"{cfg.get('size_schedule') or str(cfg['image_size']) + ' px throughout'}; calibration: "
            f"{cfg.get('calibration', 'none')}; input focus: {cfg.get('focus', 'none')}; weight average: "
            f"{'EMA, decay ' + str(cfg['ema']) if cfg.get('ema') else 'none'}."
        )
    control = tr.get("control")
    if control:
        sec.add(
            control
            if isinstance(control, str)
            else "What pretraining buys: the same head trained on a random-init ResNet50's features (same data, seed, "
            "epochs) "
            f"reaches validation AUC {fmt(control['val_auc'])} and accuracy {fmt(control['val_acc'])}, against "
            f"{fmt(control['model_val_auc'])} and {fmt(control['model_val_acc'])} for this model."
        )
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
                    fmt(h["train_loss"], 4),
                    fmt(h["train_acc"]),
                    fmt(h["val_loss"], 4),
                    fmt(h["val_auc"]),
                    fmt(h["val_acc"]),
                ]
                for h in tr["history"]
            ],
        )
    )
    return sec.add(figure(figures or {}, "training", "Loss, AUC and accuracy per epoch"))


def metrics_section(results: dict, figures: dict | None = None) -> Section:
    figures = figures or {}
    sec = Section("Classification metrics")
    sec.add("Predictions are joined to labels by file path. " + threshold_sentence(results))
    sec.add(scope_sentence(results["provenance"]))
    for name, m in results["metrics"].items():
        rows = [
            [c, fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]), r["support"]] for c, r in m["per_class"].items()
        ]
        rows += [
            [avg, fmt(m[key]["precision"]), fmt(m[key]["recall"]), fmt(m[key]["f1"]), m[key]["support"]]
            for avg, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg"))
        ]
        sec.add(Table(["class", "precision", "recall", "f1", "support"], rows, f"{name} = {m['threshold']:.3f}"))
        ci, unit = m["roc_auc_ci95"], m.get("roc_auc_ci_unit") or "image"
        sec.add(
            f"{name}: accuracy {fmt(m['accuracy'])}, sensitivity {fmt(m['sensitivity'])}, specificity "
            f"{fmt(m['specificity'])}, "
            f"ROC-AUC {fmt(m['roc_auc'])}"
            + (f" (95% bootstrap CI {ci[0]:.3f}-{ci[1]:.3f}, resampling by {unit})" if ci else "")
            + f", mean loss {fmt(m['mean_loss'], 4)}."
        )
    sec.add(operating_points_sentence(results["metrics"][FIXED_KEY]))  # threshold-free
    sec.add(calibration_sentence(results))
    row = [
        f
        for f in (
            figure(figures, "roc", "ROC curve on the evaluated split"),
            figure(figures, "confusion", f"Confusion matrix at the decision threshold {decided_at(results)}"),
            figure(figures, "calibration", "Reliability on the evaluated split, before and after temperature scaling"),
        )
        if f
    ]
    return sec.add(FigureRow(row) if row else None)


def scope_sentence(provenance: dict) -> str:
    """What the metrics estimate: performance on the collection the films came from, not beyond it."""
    split, data = provenance.get("eval_split"), provenance.get("data")
    training = (provenance.get("training_data") or {}).get("root")
    where = {
        "heldout": "patients held out of the training collection before validation was carved",
        "val": "the validation films, which also chose the model's epoch and threshold (optimistic)",
    }.get(split, f"the '{split}' split")
    chosen = validation_sentence((provenance.get("training_data") or {}).get("validation"))
    if training and data and str(training) != str(data):
        return (
            f"What these numbers mean: they come from {where} of {data}, not the training data ({training}): an "
            "external check, valid for films like these; the domain-shift guard's flagged share is reported below."
            + chosen
        )
    return (
        f"What these numbers mean: they come from {where} of the collection the model was trained on. They estimate "
        "how it does on films from the same source, machines and years, not on other hospitals or years, where "
        "performance is usually lower. To know, evaluate it on an external set: `pneumocam evaluate --checkpoint "
        "MODEL --data OTHER` (the domain-shift guard's flagged share comes with it)." + chosen
    )


def validation_sentence(plan: dict | None) -> str:
    """Which validation chose the model's epoch, temperature and threshold, and whether it saw shift."""
    if not plan:
        return ""
    n_val = plan.get("n_val_used", plan.get("n_val"))
    if plan.get("source") == "family":
        return (
            f" The model was chosen on a validation that sees shift: every NORMAL film of the acquisition family "
            f"{plan.get('family')} held out whole, with a matched share of PNEUMONIA patients ({n_val} films); its "
            "figures are in the training table."
        )
    kind = (
        "the dataset's own val split" if plan.get("source") == "dataset" else "random patients of the same collection"
    )
    return (
        f" The model was chosen on {n_val} validation films of {kind}, which share its source with the training "
        "films; `--val-source family` holds out a whole acquisition family instead, a validation that sees shift."
    )


def operating_points_sentence(m: dict) -> str | None:
    """Threshold-free operating points with their bootstrap intervals."""
    parts = []
    for key, text in (
        ("sensitivity_at_specificity_0.85", "sensitivity at specificity >= 0.85"),
        ("specificity_at_sensitivity_0.95", "specificity at sensitivity >= 0.95"),
    ):
        point = m.get(key)
        if point and point.get("value") is not None:
            ci = point.get("ci95")
            parts.append(f"{text}: {point['value']:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
    return ("Operating points (any threshold): " + "; ".join(parts) + ".") if parts else None


def calibration_sentence(results: dict) -> str:
    cal = results.get("calibration")
    ece = results["metrics"][FIXED_KEY].get("ece")  # threshold-free
    here = f" Expected calibration error (15 bins) on the evaluated split: {fmt(ece)}." if ece is not None else ""
    if not cal:
        return "This checkpoint records no calibration: probabilities are the raw sigmoid of the logit." + here
    if cal["method"] == "none":
        why = f" Why: {cal['note']}." if cal.get("note") else ""
        return f"Calibration off: raw probabilities (validation ECE {fmt(cal['ece_before'])}).{why}" + here
    return (
        f"Probabilities are temperature-scaled (T = {cal['temperature']:.3f}, fitted on {cal['fitted_on']}): "
        "validation "
        f"ECE {fmt(cal['ece_before'])} before, {fmt(cal['ece_after'])} after." + here
    )


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
    grid = figure(
        figures or {}, "heatmaps", "Random NORMAL and PNEUMONIA films beside their overlays (red titles: misclassified)"
    )
    return sec.add(grid or "The heatmap grid needs the films themselves; it was not in this run folder.")


SECTIONS = (
    summary_section,
    provenance_section,
    data_section,
    training_section,
    metrics_section,
    populations_section,
    guard_section,
    heatmaps_section,
    statistics_section,
    ground_truth_section,
    attention_section,
    reliance_section,
    trust_section,
    conclusion_section,
)


def build_sections(results: dict, figures: dict | None = None) -> list[Section]:
    """Every section that applies to this run, in reading order."""
    return [s for s in (section(results, figures or {}) for section in SECTIONS) if s is not None]
