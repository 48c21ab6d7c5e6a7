"""A run folder on disk: reading what it holds (RunFolder) and writing the per-image files of a run.

Layout (README, "What a run writes"): config.json first, then train/, metrics.json, leakage.csv,
predictions.csv, heatmaps.npz, importance.csv, stats.json, results.json, figures/, report.html, report.md,
skipped.csv; INCOMPLETE until it finishes.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from rich.markup import escape

from pneumocam import CLASS_NAMES
from pneumocam.analysis.stats import summary_text
from pneumocam.core.errors import PneumocamError
from pneumocam.core.messages import note
from pneumocam.core.outputs import is_complete, write_csv, write_json, write_skipped
from pneumocam.core.provenance import environment, library_versions
from pneumocam.core.schema import (
    CONFIG,
    FIGURES,
    HEATMAPS,
    IMPORTANCE,
    IMPORTANCE_COLUMNS,
    LEAKAGE,
    METRICS,
    RESULTS,
    SKIPPED,
    STATS,
    decide,
    write_heatmaps,
)
from pneumocam.data import Skipped, balanced_indices, fingerprint
from pneumocam.data.masks import load_masks
from pneumocam.evaluation.evaluate import metrics_record
from pneumocam.explain.cam import upsample
from pneumocam.report.figures import heatmap_grid, ood_grid


class RunFolder:
    """What a `pneumocam run` folder holds, read in one place (the CLI and resume never parse it themselves)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _json(self, name: str) -> dict:
        file = self.path / name
        if not file.is_file():
            raise PneumocamError(f"{self.path} is not a `pneumocam run` folder (no {name})")
        return json.loads(file.read_text())

    @property
    def experiment(self) -> dict:
        """The run's settings (config.json's "experiment"): train settings, evaluated split, masks, method."""
        config = self._json(CONFIG)
        if "experiment" not in config:
            raise PneumocamError(f"{self.path} is not a `pneumocam run` folder (its config.json holds no experiment)")
        return config["experiment"]

    @property
    def checkpoint(self) -> Path:
        return Path(self.experiment["checkpoint"] or self.path / "train" / "model.pt")

    @property
    def data(self) -> Path:
        return Path(self.experiment["train"]["data"])

    @property
    def eval_split(self) -> str:
        return self.experiment["eval_split"]

    @property
    def lung_masks(self) -> Path | None:
        lungs = (self.experiment.get("masks") or {}).get("lungs")
        return Path(lungs) if lungs else None

    @property
    def results(self) -> dict:
        return self._json(RESULTS)

    @property
    def complete(self) -> bool:
        return is_complete(self.path)

    @property
    def trained_here(self) -> bool:
        return (self.path / "train" / CONFIG).is_file()


def write_importance(
    path: Path,
    loaded,
    labels,
    preds,
    threshold: float,
    probs,
    targets,
    scores: dict,
    lung_sources: list[str] | None,
    in_distribution: np.ndarray | None = None,
) -> None:
    """importance.csv: one row per image (core.schema.IMPORTANCE_COLUMNS), every score named by its normalisation;
    NaN where a score does not exist; pred decided at `threshold`, the run's decision threshold, written beside it;
    in_distribution (1 / 0): the guard's verdict, which decides whether the statistics used the row."""
    header = [*IMPORTANCE_COLUMNS, *scores]
    cut = repr(float(threshold))
    rows = (
        [p, CLASS_NAMES[lab], CLASS_NAMES[q], cut, f"{pr:.6f}", CLASS_NAMES[t]]
        + [repr(float(scores[s][i])) for s in scores]
        for i, (p, lab, q, pr, t) in enumerate(zip(loaded.paths, labels, preds, probs, targets))
    )
    if lung_sources is not None:
        header.append("lung_source")
        rows = (row + [source] for row, source in zip(rows, lung_sources))
    if in_distribution is not None:
        header.append("in_distribution")
        rows = (row + [int(flag)] for row, flag in zip(rows, in_distribution))
    write_csv(path, header, rows)


def write_all_skipped(run_dir: Path, evaluated_skips: list) -> list:
    """skipped.csv of the run: the evaluated split's skips and the training's, in one list (also returned)."""
    skipped = list(evaluated_skips)
    if (run_dir / "train" / SKIPPED).exists():
        with open(run_dir / "train" / SKIPPED, newline="") as f:
            skipped += [Skipped(r["path"], r["reason"]) for r in csv.DictReader(f)]
    write_skipped(run_dir / SKIPPED, skipped)
    return skipped


def without_draws(statistics: dict) -> dict:
    """stats.json minus the per-draw p and d arrays, for results.json."""
    out = {}
    for name, entry in statistics.items():
        out[name] = {k: v for k, v in entry.items() if k != "resampled"}
        if entry.get("resampled"):
            out[name]["resampled"] = {k: v for k, v in entry["resampled"].items() if k not in ("p_values", "d_values")}
    return out


def heatmap_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:

    return balanced_indices(labels, min(per_class, int(np.bincount(labels, minlength=2).min())), seed + 1)


def trained_against(meta: dict) -> dict | None:
    """The explanation the model's training penalised (the attention penalty), read from its model.pt: its region
    measures are then not independent evidence of where the decision rests. None when nothing was."""
    config = meta.get("config") or {}
    weight = float(config.get("attention_penalty") or 0.0)
    return {"explanation": config.get("attention_on", "gradcam"), "weight": weight} if weight > 0 else None


def write_run(cfg, run_dir: Path, trained, explained, scored, statistics: dict, notes: dict) -> None:
    """Every file of a run folder except the report, from experiment's stage results (docs/results.md: results.json)."""

    loaded, result, labels = explained.loaded, explained.cam, explained.loaded.labels
    threshold = trained.session.threshold  # every pred column of the run is decided here
    size, preds = loaded.images.shape[-1], decide(result.probs, threshold)
    write_json(
        run_dir / METRICS,
        metrics_record(
            cfg.eval_split,
            cfg.train.data,
            loaded,
            str(trained.checkpoint),
            trained.meta,
            cfg.train.seed,
            explained.thresholds,
            explained.metrics,
            explained.leakage,
            explained.guard,
        )
        | (explained.groups or {}),
    )
    explained.leakage.write_csv(run_dir / LEAKAGE)
    write_heatmaps(run_dir / HEATMAPS, result, loaded.paths, labels, size, threshold)
    write_importance(
        run_dir / IMPORTANCE,
        loaded,
        labels,
        preds,
        threshold,
        result.probs,
        result.targets,
        scored.scores,
        scored.lung_sources,
        explained.in_distribution,
    )
    write_json(run_dir / STATS, statistics)
    for name in ("mean_maxnorm", "mean_raw"):
        if "sample" in statistics.get(name, {}):
            note(escape(summary_text(statistics[name], name)) + "\n")
    write_figures(cfg, run_dir, explained, preds)
    skipped = write_all_skipped(run_dir, loaded.skipped)
    provenance = run_provenance(cfg, trained, loaded)
    write_json(
        run_dir / RESULTS,
        {
            "provenance": provenance,
            "config": cfg.to_dict(),
            "metrics": explained.metrics,
            "calibration": trained.meta.get("calibration"),
            "focus": explained.focus,
            "guard": explained.guard,
            "thresholds": explained.thresholds,
            "decision": trained.session.decision(),
            "leakage": explained.leakage.to_dict(),
            "empty_maps": scored.empty,
            "training": trained.training,
            "statistics": without_draws(statistics),
            "statistics_notes": notes,
            "ground_truth": scored.ground_truth,
            "attention": scored.attention,
            "trust": scored.trust,
            "reliance": scored.reliance,
            "populations": explained.groups,
            "trained_against": trained_against(trained.meta),
            "independent_attention": scored.independent,
            "shortcut": scored.shortcut,
            "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
            "cam": {
                "method": result.method,
                "layer": result.layer,
                "target": cfg.target,
                "map_shape": list(result.maps.shape[1:]),
                "input_map_shape": list(explained.input_cam.maps.shape[1:]),
                "normalised_by_library": result.normalised,
            },
        },
    )


def run_provenance(cfg, trained, loaded) -> dict:
    """results.json's provenance: data, split, checkpoint, weights, seed, size, versions, precision, command."""
    size = loaded.images.shape[-1]
    return {
        "data": str(cfg.train.data),
        # where relative paths (--data, predictions.csv's) start from: the viewer opens the films from there
        "working_directory": os.getcwd(),
        "eval_split": cfg.eval_split,
        "eval_fingerprint": fingerprint(loaded.samples),
        "checkpoint": str(trained.checkpoint),
        "weights": trained.meta.get("weights"),
        "model": trained.meta.get("foreign"),  # what a foreign model declared (model.foreign); None: pneumocam's
        "seed": cfg.train.seed,
        "image_size": size,
        "versions": library_versions(),
        "environment": environment(),
        "command": cfg.command,
        "training_data": trained.meta.get("data"),
        "synthetic_data": cfg.synthetic,
        # the evaluation's and explanation's forward passes; training's is in model.pt's metadata
        "precision": trained.session.precision_record(),  # as run_experiment resolved it
        "training_precision": trained.meta.get("precision"),
    }


def write_figures(cfg, run_dir: Path, explained, preds: np.ndarray) -> None:
    """figures/heatmaps.png (a per-class sample, outlined by the lesion or lung masks) and figures/ood.png (the films
    farthest from the training films, flagged first)."""
    loaded, result, labels = explained.loaded, explained.cam, explained.loaded.labels
    size = loaded.images.shape[-1]
    pick = heatmap_sample(labels, cfg.grid_per_class, cfg.train.seed)
    outline = cfg.masks.get("lesion") or cfg.masks.get("lungs")
    contours = load_masks(outline, [loaded.samples[i] for i in pick], size)[0] if outline else None
    heatmap_grid(
        run_dir / FIGURES / "heatmaps.png",
        np.asarray(loaded.images[pick]),
        upsample(result.maps[pick], size),
        labels[pick],
        preds[pick],
        result.probs[pick],
        [Path(loaded.paths[i]).name for i in pick],
        contours,
    )
    if explained.guard["fitted"] or explained.guard["n_flagged"]:
        found = explained.verdicts
        order = np.argsort([-(v.ood_score if np.isfinite(v.ood_score) else np.inf) for v in found], kind="stable")
        order = sorted(order[:8], key=lambda i: found[i].in_distribution)  # flagged first
        ood_grid(
            run_dir / FIGURES / "ood.png",
            np.stack([np.asarray(loaded.images[i]) for i in order]),
            [Path(loaded.paths[i]).name for i in order],
            [found[i].ood_reason for i in order],
            np.array([found[i].ood_score for i in order]),
        )
