"""The whole experiment in one folder: train -> evaluate + Grad-CAM (one pass) -> importance -> statistics -> report.

`pneumocam run`, `pneumocam demo` and `pneumocam explain`-style reuse all go through run_experiment.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import CLASS_NAMES
from .cam import METHODS, make_cam, save_heatmaps, upsample
from .data import Skipped, balanced_indices, discover, fingerprint, load_images, split_holdout
from .errors import PneumocamError
from .evaluate import Predictions, checkpoint_thresholds, metrics_at_thresholds, metrics_record
from .importance import SCORES, empty_maps, importance_scores
from .model import build_model, load_checkpoint, resolve_device
from .outputs import mark_complete, new_run_folder, write_csv, write_json, write_skipped
from .provenance import environment, library_versions
from .stats import compare_groups, format_p, resampled_draws, summary_text
from .train import TrainConfig, fit

ORIGINAL_SCORE = "mean_maxnorm"
ATTENTION_TESTED = ("share_lungs", "share_outside_body", "ratio_lungs", "ratio_outside_body")


@dataclass
class ExperimentConfig:
    train: TrainConfig
    eval_split: str = "test"
    checkpoint: str | None = None
    method: str = "gradcam"
    target: str = "pred"
    n_per_class: int | None = 30  # None: every image of the split
    n_draws: int = 1000
    alpha: float = 0.05
    grid_per_class: int = 4
    bootstrap: int = 1000
    synthetic: bool = False
    masks: dict[str, str] = field(default_factory=dict)  # region name -> mask folder (lesion, lungs, marker, ...)
    lung_model: str | None = None  # a LungModel file for images without a lung mask (else the classical estimate)
    regions: bool = True  # lung / diaphragm / body / outside-body attention measures
    trust_images: int = 16  # images per trust check (randomisation, deletion / insertion); 0 skips them
    trust_steps: int = 10
    strict: bool = False  # any overlap between evaluated images and what the model saw is an error
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}


def _validate(cfg: ExperimentConfig) -> None:
    if cfg.method not in METHODS:
        raise PneumocamError(f"--method must be one of {', '.join(METHODS)}, got '{cfg.method}'")
    if cfg.target not in ("pred", "true", *CLASS_NAMES):
        raise PneumocamError(f"--target must be pred, true, NORMAL or PNEUMONIA, got '{cfg.target}'")
    if cfg.n_per_class is not None and cfg.n_per_class < 2:
        raise PneumocamError("--n-per-class must be at least 2 (or 'all')")
    index = discover(cfg.train.data)
    if cfg.eval_split == "heldout":
        if cfg.checkpoint is None and cfg.train.holdout_fraction <= 0:
            cfg.train.holdout_fraction = 0.15
        index.split("train")
    else:
        index.split(cfg.eval_split)  # a missing split fails now, not after training
    if cfg.checkpoint is None:
        build_model(cfg.train.weights)  # and so do missing or bad weights
        if cfg.eval_split == "val":
            from .data import choose_validation

            *_, plan = choose_validation(index, cfg.train.val_source, cfg.train.val_fraction, cfg.train.seed,
                                         holdout_fraction=cfg.train.holdout_fraction)
            if plan.source == "dataset":
                raise PneumocamError(
                    f"--eval-split val: this run would choose its best epoch and threshold on the dataset's val split "
                    f"({plan.n_val} images; {plan.reason}), so scores on that split would not be held-out. Evaluate on "
                    "test or heldout, or carve validation from train with --val-source carved")


def evaluated_samples(index, split: str, meta: dict, checkpoint) -> list:
    """The evaluated images. 'heldout' is rebuilt from the checkpoint's own recorded plan (fraction and seed),
    never from the command line's defaults, so it is the part that model never trained or selected on."""
    if split != "heldout":
        return index.split(split)
    plan = (meta.get("data") or {}).get("validation") or {}
    fraction = plan.get("holdout_fraction") or 0.0
    if fraction <= 0:
        raise PneumocamError(f"{checkpoint} was trained without a held-out part of train (no holdout fraction recorded): "
                             "there is no held-out split to evaluate; use --eval-split test or val")
    seed = plan.get("holdout_seed", meta.get("seed", 0))
    return split_holdout(index, fraction, seed)[1]


def _group_stats(scores: dict[str, np.ndarray], labels: np.ndarray, cfg: ExperimentConfig) -> tuple[dict, dict]:
    """Per score: the original n-vs-n sample, every image, and the distribution over resampled draws."""
    counts = np.bincount(labels, minlength=2)
    n = cfg.n_per_class if cfg.n_per_class is not None else None
    notes = {}
    if n is not None and n > counts.min():
        notes["n_per_class"] = f"asked for {n} per class, but the split holds {counts.min()} in its smaller class: used {counts.min()}"
        n = int(counts.min())
    sample = balanced_indices(labels, n, cfg.train.seed) if n is not None else np.arange(len(labels))
    out = {}
    for name, values in scores.items():
        finite = np.isfinite(values)
        normal, pneu = values[(labels == 0) & finite], values[(labels == 1) & finite]
        entry = {"description": SCORES.get(name, name)}
        s_labels, s_values = labels[sample], values[sample]
        keep = np.isfinite(s_values)
        try:
            entry["sample"] = compare_groups(s_values[keep & (s_labels == 0)], s_values[keep & (s_labels == 1)], cfg.alpha, seed=cfg.train.seed)
            entry["sample"]["draw"] = {"n_per_class": n, "seed": cfg.train.seed}
            entry["all_images"] = compare_groups(normal, pneu, cfg.alpha, seed=cfg.train.seed)
            if n is not None and min(len(normal), len(pneu)) > n:
                entry["resampled"] = resampled_draws(normal, pneu, n, cfg.n_draws, cfg.alpha, cfg.train.seed)
        except PneumocamError as exc:
            entry["error"] = str(exc)
        out[name] = entry
    return out, notes | {"sample_indices": sample.tolist()}


def _train_or_resume(cfg: ExperimentConfig, run_dir: Path, resume: bool) -> None:
    """Train into RUN/train; on resume, continue an interrupted training there (or keep a finished one)."""
    from .outputs import INCOMPLETE_MARKER, is_complete

    train_dir = run_dir / "train"
    if resume and is_complete(train_dir) and (train_dir / "train_summary.json").is_file():
        return
    if resume and (train_dir / "checkpoints" / "last.pt").is_file():
        fit(None, run_dir=train_dir, resume=True)
        return
    train_dir.mkdir(exist_ok=True)
    (train_dir / INCOMPLETE_MARKER).write_text("this training has not finished\n")
    fit(cfg.train, run_dir=train_dir)


def resume_experiment(run_dir: str | Path, on_start=None) -> Path:
    """Finish an interrupted `pneumocam run` folder: training resumes where it stopped, then everything after it."""
    from .outputs import is_complete

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    if "experiment" not in saved:
        raise PneumocamError(f"{run_dir} is not a `pneumocam run` folder (no config.json with an experiment): nothing to resume")
    if is_complete(run_dir):
        raise PneumocamError(f"{run_dir} is already complete: nothing to resume")
    values = dict(saved["experiment"])
    cfg = ExperimentConfig(train=TrainConfig(**values.pop("train")), **values)
    return run_experiment(cfg, run_dir=run_dir, resume=True, on_start=on_start)


def run_experiment(cfg: ExperimentConfig, runs_dir: str | Path | None = None, run_dir: Path | None = None,
                   extra_sections=None, resume: bool = False, on_start=None) -> Path:
    from . import report as rp
    from .leakage import check_leakage, enforce

    _validate(cfg)
    preloaded = load_checkpoint(cfg.checkpoint, resolve_device(cfg.train.device)) if cfg.checkpoint else None
    if preloaded is not None:  # a checkpoint without a held-out part fails before any folder is made
        evaluated_samples(discover(cfg.train.data), cfg.eval_split, preloaded[1], cfg.checkpoint)
    run_dir = run_dir or new_run_folder(runs_dir, prefix="run")
    if on_start is not None:
        on_start(run_dir)
    if not resume:  # written first, so an interrupted run can be resumed from its folder alone
        write_json(run_dir / "config.json", {"experiment": cfg.to_dict(), "versions": library_versions(), "environment": environment()})
    device = resolve_device(cfg.train.device)
    training = None
    if cfg.checkpoint is None:
        _train_or_resume(cfg, run_dir, resume)
        checkpoint = run_dir / "train" / "model.pt"
        training = json.loads((run_dir / "train" / "train_summary.json").read_text())
        model, meta = load_checkpoint(checkpoint, device)
    else:
        checkpoint = Path(cfg.checkpoint)
        model, meta = preloaded
    model = model.to(memory_format=torch.channels_last)
    size = int(meta.get("image_size", cfg.train.image_size))
    index = discover(cfg.train.data)
    samples = evaluated_samples(index, cfg.eval_split, meta, checkpoint)
    loaded = load_images(samples, size, use_cache=cfg.train.use_cache, description=f"Reading {cfg.eval_split}")
    if len(set(loaded.labels.tolist())) < 2:
        raise PneumocamError(f"the {cfg.eval_split} split holds one class only after skipping unreadable files")
    labels = loaded.labels
    leakage = check_leakage(meta, loaded.samples)
    enforce(leakage, cfg.strict, lambda text: print(f"WARNING: {text}", file=sys.stderr))
    leakage.write_csv(run_dir / "leakage.csv")

    # One pass gives the predictions (its forward) and the maps (its backward through the head).
    cam = make_cam(model, cfg.method, batch_size=cfg.train.batch_size, device=device)
    result = cam(loaded.images, target=cfg.target, labels=labels, description=f"{cfg.method} ({cfg.eval_split})")
    probs = result.probs
    predictions = Predictions(loaded.paths, labels, probs, [s.patient_id for s in loaded.samples])
    thresholds, described = checkpoint_thresholds(meta)
    metrics = metrics_at_thresholds(predictions, thresholds, cfg.bootstrap, cfg.train.seed)
    write_json(run_dir / "metrics.json", metrics_record(cfg.eval_split, cfg.train.data, loaded, str(checkpoint), meta,
                                                       cfg.train.seed, described, metrics, leakage))
    preds = (probs >= 0.5).astype(int)
    write_csv(run_dir / "predictions.csv", ["path", "label", "prob_pneumonia", "pred"], predictions.rows(0.5))
    save_heatmaps(run_dir / "heatmaps.npz", result, loaded.paths, labels, size)

    scores = importance_scores(result.maps, size, normalised=result.normalised)
    empty = empty_maps(result.maps)
    empty_summary = {"n": int(empty.sum()), "by_class": {CLASS_NAMES[c]: int(empty[labels == c].sum()) for c in (0, 1)},
                     "note": "maps with no positive value (ReLU removed everything): no score, no pointing-game outcome, "
                             "left out of the statistics"}
    ground_truth = {}
    for name, root in cfg.masks.items():
        if name == "lungs" and cfg.regions:
            continue  # measured with the other anatomical regions in _attention
        share, hit, found, area = _mask_measures(root, loaded.samples, result.maps, size)
        scores[f"{name}_mass_share"], scores[f"{name}_pointing_hit"] = share, hit
        ground_truth[name] = {"images_with_mask": int(found.sum()),
                              "mean_mass_share": float(np.nanmean(share[found])) if found.any() else None,
                              "mean_area_share": float(area[found].mean()) if found.any() else None,
                              "pointing_game_hit_rate": float(np.nanmean(hit[found])) if found.any() else None}
    attention_summary, lung_sources = {}, None
    if cfg.regions:
        attention_summary, lung_sources = _attention(cfg, loaded, result.maps, size, scores, labels)
    trust = _trust(cfg, model, loaded, result, labels, device) if cfg.trust_images > 0 else None
    header = ["path", "label", "pred", "prob_pneumonia", "cam_target", *scores]
    rows = ([p, CLASS_NAMES[l], CLASS_NAMES[q], f"{pr:.6f}", CLASS_NAMES[t], *(repr(float(scores[s][i])) for s in scores)]
            for i, (p, l, q, pr, t) in enumerate(zip(loaded.paths, labels, preds, probs, result.targets)))
    if lung_sources is not None:
        header.append("lung_source")
        rows = (row + [source] for row, source in zip(rows, lung_sources))
    write_csv(run_dir / "importance.csv", header, rows)
    both_classes = lambda v: all(np.isfinite(v[labels == c]).sum() >= 2 for c in (0, 1))
    stat_scores = {k: v for k, v in scores.items()
                   if k in SCORES or k in ATTENTION_TESTED or (k.endswith("_mass_share") and both_classes(v))}
    statistics, stat_notes = _group_stats(stat_scores, labels, cfg)
    write_json(run_dir / "stats.json", statistics)
    for name in (ORIGINAL_SCORE, "mean_raw"):
        if "sample" in statistics.get(name, {}):
            print(summary_text(statistics[name]["sample"], name), "\n")

    # Figures.
    figures = run_dir / "figures"
    rng_pick = balanced_indices(labels, min(cfg.grid_per_class, int(np.bincount(labels).min())), cfg.train.seed + 1)
    contours = None
    outline = cfg.masks.get("lesion") or cfg.masks.get("lungs")
    if outline:
        from .regions import load_masks

        contours, _ = load_masks(outline, [loaded.samples[i] for i in rng_pick], size)
    figs = {
        "heatmaps": rp.heatmap_grid(figures / "heatmaps.png", np.asarray(loaded.images[rng_pick]), upsample(result.maps[rng_pick], size),
                                    labels[rng_pick], preds[rng_pick], probs[rng_pick], [Path(loaded.paths[i]).name for i in rng_pick], contours),
        "roc": rp.roc_figure(figures / "roc.png", labels, probs, metrics["threshold_0.5"]["roc_auc"], metrics["threshold_0.5"]["roc_auc_ci95"]),
        "confusion": rp.confusion_figure(figures / "confusion.png", metrics["threshold_0.5"]["confusion_matrix"]["rows_true_cols_pred"], 0.5),
    }
    for name, entry in statistics.items():
        if "sample" in entry:
            x = scores[name]
            sample = np.array(stat_notes["sample_indices"])
            s_lab, s_val = labels[sample], x[sample]
            figs[f"scores_{name}"] = rp.score_comparison(figures / f"scores_{name}.png", s_val[(s_lab == 0) & np.isfinite(s_val)],
                                                         s_val[(s_lab == 1) & np.isfinite(s_val)], name, entry["sample"])
        if "resampled" in entry and name in (ORIGINAL_SCORE, "mean_raw"):
            figs[f"pvalues_{name}"] = rp.p_histogram(figures / f"pvalues_{name}.png", entry["resampled"]["p_values"], cfg.alpha, name,
                                                     entry["resampled"]["n_per_class"])
    if training:
        figs["training"] = rp.training_curves(figures / "training.png", training["history"])
    if attention_summary:
        figs["regions"] = rp.region_bars(figures / "regions.png", attention_summary["mean_share_by_class"], attention_summary["mean_area_by_class"])
    if trust:
        figs["trust"] = rp.trust_figure(figures / "trust.png", trust)

    skipped = list(loaded.skipped)
    if (run_dir / "train" / "skipped.csv").exists():
        import csv

        with open(run_dir / "train" / "skipped.csv", newline="") as f:
            skipped += [Skipped(r["path"], r["reason"]) for r in csv.DictReader(f)]
    write_skipped(run_dir / "skipped.csv", skipped)

    provenance = {"data": str(cfg.train.data), "eval_split": cfg.eval_split, "eval_fingerprint": fingerprint(loaded.samples),
                  "checkpoint": str(checkpoint), "weights": meta.get("weights"), "seed": cfg.train.seed,
                  "image_size": size, "versions": library_versions(), "environment": environment(), "command": cfg.command,
                  "training_data": meta.get("data"), "synthetic_data": cfg.synthetic}
    results = {"provenance": provenance, "config": cfg.to_dict(), "metrics": metrics, "thresholds": described,
               "leakage": leakage.to_dict(), "empty_maps": empty_summary, "training": training,
               "statistics": {k: {kk: vv for kk, vv in v.items() if kk != "resampled"} | (
                   {"resampled": {kk: vv for kk, vv in v["resampled"].items() if kk not in ("p_values", "d_values")}}
                   if "resampled" in v else {}) for k, v in statistics.items()},
               "statistics_notes": {k: v for k, v in stat_notes.items() if k != "sample_indices"},
               "ground_truth": ground_truth, "attention": attention_summary, "trust": trust, "cam": {"method": result.method, "layer": result.layer, "target": cfg.target,
                                                      "map_shape": list(result.maps.shape[1:]), "normalised_by_library": result.normalised},
               "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
               "figures": {k: str(Path(v).relative_to(run_dir)) for k, v in figs.items()}}
    write_json(run_dir / "results.json", results)
    write_json(run_dir / "config.json", {"experiment": cfg.to_dict(), "versions": library_versions(), "environment": environment()})
    sections = build_report_sections(results, figs, statistics, extra_sections)
    from .outputs import atomic_write_text

    title = "pneumocam report" + (" (SYNTHETIC DEMO DATA)" if cfg.synthetic else "")
    atomic_write_text(run_dir / "report.html", rp.render_html(title, sections))
    atomic_write_text(run_dir / "report.md", rp.render_markdown(title, sections, run_dir))
    mark_complete(run_dir)
    return run_dir


def _mask_measures(root: str, samples, maps: np.ndarray, size: int, chunk: int = 128):
    """Per image: share of map mass in the mask, pointing-game hit, whether a non-empty mask exists, mask area share.
    Maps are upsampled a chunk at a time, so memory does not grow with the split."""
    from .regions import area_share, load_masks, mass_share, pointing_game

    n = len(samples)
    share, hit, area = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    found = np.zeros(n, dtype=bool)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        masks, present = load_masks(root, samples[part], size)
        present &= masks.reshape(len(masks), -1).any(axis=1)
        up = upsample(maps[part], size)
        share[part] = np.where(present, mass_share(up, masks), np.nan)
        hit[part] = np.where(present, pointing_game(up, masks).astype(float), np.nan)
        area[part], found[part] = area_share(masks), present
    return share, hit, found, area


def _attention(cfg: ExperimentConfig, loaded, maps: np.ndarray, size: int, scores: dict, labels: np.ndarray, chunk: int = 128):
    """Region shares per image (added to `scores`), and their means per class for the report."""
    from .lungs import LungModel
    from .regions import REGIONS, attention_measures, load_masks

    estimator = LungModel.load(cfg.lung_model) if cfg.lung_model else None
    columns, sources = {}, []
    for start in range(0, len(maps), chunk):
        part = slice(start, start + chunk)
        samples = loaded.samples[part]
        if cfg.masks.get("lungs"):
            lung_masks, found = load_masks(cfg.masks["lungs"], samples, size)
        else:
            lung_masks, found = np.zeros((len(samples), size, size), dtype=bool), np.zeros(len(samples), dtype=bool)
        measures = attention_measures(upsample(maps[part], size), np.asarray(loaded.images[part]), lung_masks, found, estimator)
        for name, values in measures.columns().items():
            columns.setdefault(name, []).append(values)
        sources += measures.lung_source
    columns = {k: np.concatenate(v) for k, v in columns.items()}
    scores.update(columns)
    by_class = lambda prefix: {CLASS_NAMES[c]: {r: float(np.nanmean(columns[f"{prefix}_{r}"][labels == c])) for r in REGIONS} for c in (0, 1)}
    counts = {s: sources.count(s) for s in sorted(set(sources))}
    return {"mean_share_by_class": by_class("share"), "mean_ratio_by_class": by_class("ratio"), "mean_area_by_class": by_class("area"),
            "pointing_lungs_by_class": {CLASS_NAMES[c]: float(np.nanmean(columns["pointing_lungs"][labels == c])) for c in (0, 1)},
            "lung_sources": counts, "estimated": any(s != "mask" for s in sources)}, sources


def _trust(cfg: ExperimentConfig, model, loaded, result, labels: np.ndarray, device) -> dict:
    from .trust import deletion_insertion, randomisation_test

    n = min(cfg.trust_images // 2, int(np.bincount(labels, minlength=2).min()))
    pick = balanced_indices(labels, max(n, 1), cfg.train.seed + 2)
    images, targets = np.asarray(loaded.images[pick]), result.targets[pick].astype(int)
    method = cfg.method
    return {"randomisation": randomisation_test(model, images, targets, method, cfg.train.seed, reference=result.maps[pick]),
            "faithfulness": deletion_insertion(model, images, result.maps[pick], targets, cfg.trust_steps, cfg.train.seed, device)}


def _fmt(x, digits=3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and x != x:
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def build_report_sections(results: dict, figs: dict, statistics: dict, extra_sections=None):
    from .report import Banner, Figure, Section, Table

    prov, metrics = results["provenance"], results["metrics"]
    weights = prov.get("weights") or {}
    top = Section("What this report is")
    if prov["synthetic_data"]:
        top.add(Banner("SYNTHETIC DATA: every image here is a generated phantom, not a patient's film. "
                       "Nothing in this report is a clinical finding.", "danger"))
    if weights.get("source") == "none":
        top.add(Banner("RANDOM INITIALISATION: this model started from random weights, not ImageNet. "
                       "Accuracy and heatmaps are not those of the original (ImageNet) protocol.", "danger"))
    top.add(f"Data: {prov['data']} (evaluated split: {prov['eval_split']}, fingerprint {prov['eval_fingerprint']}). "
            f"Weights: {weights.get('description', 'unknown')}. Seed: {prov['seed']}. Image size: {prov['image_size']} px. "
            f"Checkpoint: {prov['checkpoint']}. Command: {prov['command']}")
    top.add(leakage_box(results.get("leakage")))
    top.add(Table(["library", "version"], [[k, v] for k, v in prov["versions"].items()], "Versions"))
    sections = [top]

    data = Section("Data and splits")
    tdata = prov.get("training_data") or {}
    plan = tdata.get("validation") or {}
    if plan:
        data.add(Table(["item", "value"], [["validation source", plan.get("source")], ["why", plan.get("reason")],
                                            ["grouped by", plan.get("grouping")], ["train images / patients", f"{plan.get('n_train_used', plan.get('n_train'))} / {plan.get('patients_train')}"],
                                            ["validation images / patients", f"{plan.get('n_val_used', plan.get('n_val'))} / {plan.get('patients_val')}"],
                                            ["patients in both", plan.get("shared_patients")], ["training data fingerprint", tdata.get("fingerprint")]],
                       "Training and validation split"))
    m05 = metrics["threshold_0.5"]
    data.add(f"Evaluated split '{prov['eval_split']}': {m05['n']} images "
             f"({m05['per_class']['NORMAL']['support']} NORMAL, {m05['per_class']['PNEUMONIA']['support']} PNEUMONIA).")
    skipped = results["skipped"]
    data.add(Table(["file", "reason"], [[s["path"], s["reason"]] for s in skipped[:200]],
                   f"Skipped files ({len(skipped)}; full list in skipped.csv)") if skipped else "No file was skipped.")
    sections.append(data)

    if results.get("training"):
        tr = results["training"]
        training = Section("Training")
        cfg = results["config"]["train"]
        training.add(f"Mode {cfg['mode']}, {cfg['epochs']} epochs, batch {cfg['batch_size']}, AdamW lr {cfg['lr']}, schedule {cfg['schedule']}, "
                     f"class weights {cfg['class_weights']}, augmentation {'on' if cfg['augment'] else 'off'}. "
                     f"Best epoch on validation ({tr['select_by']}): {tr['best_epoch']}.")
        training.add(Table(["epoch", "train loss", "train acc", "val loss", "val AUC", "val acc"],
                           [[h["epoch"], _fmt(h["train_loss"], 4), _fmt(h["train_acc"]), _fmt(h["val_loss"], 4), _fmt(h["val_auc"]), _fmt(h["val_acc"])]
                            for h in tr["history"]]))
        if "training" in figs:
            training.add(Figure(figs["training"], "Loss, AUC and accuracy per epoch"))
        sections.append(training)

    perf = Section("Classification metrics")
    perf.add("Predictions are joined to labels by file path. " + threshold_sentence(results))
    for name, m in metrics.items():
        rows = [[c, _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), r["support"]] for c, r in m["per_class"].items()]
        rows += [[avg, _fmt(m[key]["precision"]), _fmt(m[key]["recall"]), _fmt(m[key]["f1"]), m[key]["support"]]
                 for avg, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg"))]
        perf.add(Table(["class", "precision", "recall", "f1", "support"], rows, f"{name} = {m['threshold']:.3f}"))
        ci = m["roc_auc_ci95"]
        unit = m.get("roc_auc_ci_unit") or "image"
        perf.add(f"{name}: accuracy {_fmt(m['accuracy'])}, sensitivity {_fmt(m['sensitivity'])}, specificity {_fmt(m['specificity'])}, "
                 f"ROC-AUC {_fmt(m['roc_auc'])}" + (f" (95% bootstrap CI {ci[0]:.3f}-{ci[1]:.3f}, resampling by {unit})" if ci else "") +
                 f", mean loss {_fmt(m['mean_loss'], 4)}.")
    perf.add(Figure(figs["roc"], "ROC curve on the evaluated split"), Figure(figs["confusion"], "Confusion matrix at threshold 0.5"))
    sections.append(perf)

    cam = results["cam"]
    heat = Section("Grad-CAM heatmaps")
    heat.add(f"Method {cam['method']} on {cam['layer']} (map {cam['map_shape'][0]}x{cam['map_shape'][1]}, upsampled for display), "
             f"explaining the {'predicted' if cam['target'] == 'pred' else cam['target']} class.")
    heat.add(Figure(figs["heatmaps"], "Random NORMAL and PNEUMONIA films beside their overlays (red titles: misclassified)"))
    sections.append(heat)

    st = Section("Importance scores and statistics")
    st.add("Each map becomes one number per image. The original write-up used the mean of the map after dividing it by its own "
           "maximum (mean_maxnorm). After that division every map peaks at 1, so the score measures how spread out the map is, "
           "not how strongly the model relies on a region; mean_raw keeps the strength and top10_mass measures concentration. "
           "All differences are PNEUMONIA minus NORMAL.")
    notes = results.get("statistics_notes", {})
    if "n_per_class" in notes:
        st.add(Banner(notes["n_per_class"], "warning"))
    empty = results.get("empty_maps") or {}
    if empty.get("n"):
        st.add(Banner(f"Empty maps: {empty['n']} (NORMAL {empty['by_class']['NORMAL']}, PNEUMONIA {empty['by_class']['PNEUMONIA']}): "
                      "no positive value survived the ReLU. They are not scored 0 and not counted as pointing-game misses; "
                      "they are left out of every statistic below.", "warning"))
    else:
        st.add("Empty maps (no positive value after the ReLU): 0.")
    if results["cam"].get("normalised_by_library"):
        st.add(Banner(f"The {results['cam']['method']} maps come from pytorch-grad-cam already normalised per image, so no raw "
                      "score exists for them: mean_raw is left out (n/a).", "warning"))
    rows = []
    for name, entry in statistics.items():
        if "error" in entry:
            rows.append([name, entry["error"], "", "", "", "", "", ""])
            continue
        s, a = entry["sample"], entry["all_images"]
        share = entry.get("resampled", {}).get("share_p_below_alpha")
        rows.append([name, f"{s['groups']['NORMAL']['mean']:.4g} / {s['groups']['PNEUMONIA']['mean']:.4g}", format_p(s["student"]["p"]),
                     format_p(s["welch"]["p"]), format_p(s["mannwhitney"]["p"]), f"{s['cohens_d']:.2f} ({s['effect_size_label']})",
                     f"{format_p(a['welch']['p'])}, d {a['cohens_d']:.2f}", "n/a" if share is None else f"{share:.0%}"])
    st.add(Table(["score", "mean N / P (sample)", "Student p", "Welch p", "Mann-Whitney p", "Cohen's d", "all images: Welch p, d",
                  "draws with p < alpha"], rows, "Random-sample tests (the original protocol), every image, and resampled draws"))
    for key in sorted(figs):
        if key.startswith("scores_") or key.startswith("pvalues_"):
            st.add(Figure(figs[key], key.replace("_", " ", 1)))
    sections.append(st)

    if results["ground_truth"]:
        gt = Section("Where the maps fall (ground-truth masks)")
        gt.add(Table(["region", "images", "mean share of map mass", "mean share of image area", "pointing-game hit rate"],
                     [[k, v["images_with_mask"], _fmt(v["mean_mass_share"]), _fmt(v["mean_area_share"]), _fmt(v["pointing_game_hit_rate"])]
                      for k, v in results["ground_truth"].items()]))
        gt.add("A map that ignored the region would put about its area share of mass inside it; more means the map concentrates there.")
        sections.append(gt)
    if results.get("attention"):
        sections.append(attention_section(results, figs, statistics))
    if results.get("trust"):
        sections.append(trust_section(results["trust"], figs))
    for extra in extra_sections or []:
        sections.append(extra)
    sections.append(conclusion_section(results, statistics))
    return sections


def leakage_box(leakage: dict | None):
    """Always visible: whether any evaluated image (or its patient) was used to train or select the model."""
    from .report import Banner

    if not leakage or not leakage.get("recorded", True):
        return Banner("Leakage not checked: this checkpoint does not record which images trained and selected it.", "warning")
    counts = (f"images seen in training: {leakage['n_images_seen_in_training']}; in selection (epoch / threshold): "
              f"{leakage['n_images_seen_in_selection']}; patients shared with training: {leakage['n_patients_shared_with_training']}; "
              f"with selection: {leakage['n_patients_shared_with_selection']}")
    if any(leakage[k] for k in ("n_images_seen_in_training", "n_images_seen_in_selection", "n_patients_shared_with_training",
                                "n_patients_shared_with_selection")):
        return Banner(f"LEAKAGE: the evaluated split overlaps what the model saw ({counts}). The scores below are NOT held-out. "
                      f"Examples: {', '.join(leakage['examples'])}. Full list in leakage.csv.", "danger")
    return Banner(f"Leakage check passed on {leakage['n_images_evaluated']} evaluated images (content hash and patient id): "
                  f"{counts}.", "info")


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
        return text + (f"; the validation split shares {overlap} of its images with the evaluated split, so the threshold "
                       "WAS chosen on evaluated images and its results are optimistic.")
    return text + ", never chosen on the evaluated split (no evaluated image was used for selection)."


def attention_section(results: dict, figs: dict, statistics: dict):
    from .regions import REGION_TEXT, REGIONS
    from .report import Banner, Figure, Section, Table

    att = results["attention"]
    sec = Section("Where does the model look?")
    if att["estimated"]:
        sec.add(Banner(f"Lung fields ESTIMATED for some images (no mask given): {att['lung_sources']}. Shares that use them are "
                       "estimates too.", "warning"))
    sec.add("Each map's mass is split over four disjoint regions: " + "; ".join(f"{r}: {REGION_TEXT[r]}" for r in REGIONS) +
            ". The ratio divides a region's share of the mass by its share of the image area: a uniform map scores 1.0 everywhere, "
            "more than 1 means the map concentrates there.")
    rows = []
    for cls in CLASS_NAMES:
        for r in REGIONS:
            rows.append([cls, r, f"{att['mean_share_by_class'][cls][r]:.1%}", f"{att['mean_area_by_class'][cls][r]:.1%}",
                         f"{att['mean_ratio_by_class'][cls][r]:.2f}"])
    sec.add(Table(["class", "region", "mean share of map mass", "mean share of area", "mean ratio"], rows))
    sec.add(f"Pointing game (map maximum inside the lungs): NORMAL {att['pointing_lungs_by_class']['NORMAL']:.0%}, "
            f"PNEUMONIA {att['pointing_lungs_by_class']['PNEUMONIA']:.0%}.")
    cells = results["cam"]["map_shape"]
    if min(cells) < 7:
        sec.add(Banner(f"The maps have only {cells[0]}x{cells[1]} cells at this image size: their maximum can only fall on a cell "
                       "centre or the border, so the pointing game says little here. Use 224 px inputs (7x7 maps) for it.", "warning"))
    if "regions" in figs:
        sec.add(Figure(figs["regions"], "Mean share of map mass per region and class (hatched: share of image area)"))
    sec.add(lung_verdict(att))
    return sec


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
            text += (f" and put {share_out:.0%} of their mass outside the body, on the blank border, text and markers "
                     f"({outside:.2f} times a uniform share): a sign of shortcut learning")
        parts.append(text)
    return "In plain words: " + "; ".join(parts) + "."


def trust_section(trust: dict, figs: dict):
    from .report import Banner, Figure, Section, Table

    sec = Section("Is the explanation trustworthy?")
    rand = trust["randomisation"]
    sec.add(Banner(rand["verdict"], "danger" if rand["flagged"] else "info"))
    sec.add(Table(["weights randomised up to", "Spearman (raw maps)", "SSIM (normalised maps)"],
                  [[r["randomised_up_to"], _fmt(r["spearman_mean"]), _fmt(r["ssim_mean"])] for r in rand["cascade"]],
                  f"Model-parameter randomisation ({rand['method']}, {rand['n_images']} images, seed {rand['seed']})"))
    faith = trust["faithfulness"]
    sec.add(Table(["maps", "deletion AUC (lower is better)", "insertion AUC (higher is better)"],
                  [[k, _fmt(faith[k]["deletion_auc"]), _fmt(faith[k]["insertion_auc"])] for k in ("maps", "random")],
                  f"Faithfulness on {faith['n_images']} images, {faith['steps']} steps, baseline {faith['baseline']}"))
    beat = faith["maps_beat_random"]
    sec.add(f"The maps beat random maps on deletion: {'yes' if beat['deletion'] else 'no'}; on insertion: {'yes' if beat['insertion'] else 'no'}.")
    if "trust" in figs:
        sec.add(Figure(figs["trust"], "Randomisation cascade (left) and deletion / insertion curves (right)"))
    return sec


def conclusion_section(results: dict, statistics: dict):
    from .report import Section

    prov, m = results["provenance"], results["metrics"]["threshold_0.5"]
    sec = Section("Conclusion and its limits")
    sec.add(f"On the '{prov['eval_split']}' split ({m['n']} images) the classifier reached ROC-AUC {_fmt(m['roc_auc'])} and accuracy "
            f"{_fmt(m['accuracy'])} at threshold 0.5.")
    for name in (ORIGINAL_SCORE, "mean_raw"):
        entry = statistics.get(name, {})
        if "sample" not in entry:
            continue
        s = entry["sample"]
        direction = "higher" if s["cohens_d"] > 0 else "lower"
        verdict = "a difference" if s["reject_null"] else "no significant difference"
        text = (f"{name}: in the random {s['groups']['NORMAL']['n']} vs {s['groups']['PNEUMONIA']['n']} sample, PNEUMONIA images scored "
                f"{direction} than NORMAL (Cohen's d {s['cohens_d']:.2f}, {s['effect_size_label']}); Welch's test finds {verdict} "
                f"at alpha {s['alpha']} (p = {format_p(s['welch']['p'])}).")
        if "resampled" in entry:
            text += (f" Over {entry['resampled']['n_draws']} other random draws of the same size, "
                     f"{entry['resampled']['share_p_below_alpha']:.0%} reach p < {s['alpha']}: one draw alone is not a reliable answer.")
        sec.add(text)
    limits = ["Limits: a Grad-CAM map on layer4 is coarse (one value per 32x32 pixel block) and shows where the gradient-weighted "
              "features are, not why; a difference in scores between classes is an association, not evidence that the model "
              "uses pathology."]
    if (prov.get("weights") or {}).get("source") == "none":
        limits.append("The model was trained from random weights, so its maps do not speak for an ImageNet-pretrained model.")
    if prov["synthetic_data"]:
        limits.append("The data are synthetic phantoms: the result shows the pipeline works, nothing about patients.")
    if results.get("attention"):
        sec.add(lung_verdict(results["attention"]))
        if results["attention"]["estimated"]:
            limits.append("Some lung fields were estimated, not drawn: region shares on those images carry the estimate's error.")
    for name, gt in results["ground_truth"].items():
        if name == "marker" and gt["mean_mass_share"] is not None and gt["mean_area_share"]:
            ratio = gt["mean_mass_share"] / gt["mean_area_share"]
            sec.add(f"Shortcut check: the maps put {gt['mean_mass_share']:.1%} of their mass on the corner marker, which covers "
                    f"{gt['mean_area_share']:.1%} of the image ({ratio:.1f} times a uniform share)" +
                    (": the model is using the marker." if ratio > 2 else "."))
    if results.get("trust", {}) and results["trust"]["randomisation"]["flagged"]:
        limits.append("The randomisation test flagged these maps: they barely depend on the trained weights.")
    sec.add(" ".join(limits))
    return sec


def run_demo(out: str | Path, seed: int = 0, shortcut: float = 0.0, image_size: int = 96,
             counts: dict[str, int] | None = None, epochs: int = 8) -> Path:
    """The experiment on phantoms generated into the run folder, with ground-truth lesion and lung masks."""
    from .data.phantoms import write_phantom_dataset

    run_dir = new_run_folder(out, prefix="demo")
    # Sized to finish in a few minutes on 2 CPU cores: full fine-tuning from random weights at 96 px.
    counts = counts or {"train": 250, "val": 40, "test": 60}
    data = write_phantom_dataset(run_dir / "phantoms", counts, size=image_size, seed=seed, shortcut=shortcut)
    masks = {"lesion": str(data.lesion_masks), "lungs": str(data.lung_masks)}
    if data.marker_masks is not None:
        masks["marker"] = str(data.marker_masks)
    config = ExperimentConfig(
        train=TrainConfig(data=str(data.images), mode="full", weights="none", epochs=epochs, batch_size=32, image_size=image_size,
                          lr=1e-3, val_source="dataset", seed=seed, use_cache=False),
        eval_split="test", synthetic=True, masks=masks, n_draws=1000)
    return run_experiment(config, run_dir=run_dir)
