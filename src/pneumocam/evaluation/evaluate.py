"""Batched inference and evaluation. Probabilities are joined to labels by file path, never by position."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pneumocam.core.defaults import BATCH_SIZE, BOOTSTRAP_RESAMPLES, SEED
from pneumocam.core.messages import warn
from pneumocam.core.outputs import write_csv, write_json, write_skipped
from pneumocam.core.progress import track
from pneumocam.core.schema import (
    FIXED_THRESHOLD,
    LEAKAGE,
    METRICS,
    PREDICTIONS,
    PREDICTIONS_COLUMNS,
    SKIPPED,
    checkpoint_thresholds,
    decide,
    decision_record,
)
from pneumocam.data import LoadedImages, discover, fingerprint, load_images
from pneumocam.evaluation.leakage import check_leakage, enforce
from pneumocam.evaluation.metrics import BinaryMetrics
from pneumocam.evaluation.populations import group_metrics, strata_metrics
from pneumocam.evaluation.tta import VIEWS, combined, view_images
from pneumocam.model.forward import predict_logits
from pneumocam.model.guard import guard_summary, verdicts
from pneumocam.model.network import pooled_width, probability
from pneumocam.model.session import InferenceSession


@dataclass
class Predictions:
    paths: list[str]
    labels: np.ndarray
    probs: np.ndarray
    patients: list[str | None] | None = None  # per path; the AUC interval resamples patients when known
    verdicts: list | None = None  # per path: the domain-shift guard's guard.Verdict

    # pred: the decision at the model's threshold (decision_threshold, named in metrics.json's "decision"), the one
    # predict and serve decide at; pred_at_0.5 beside it. Probabilities round-trip (repr), so the metrics recomputed
    # from this file are the reported ones exactly: rounding would create ties and move the AUC.
    HEADER = tuple(PREDICTIONS_COLUMNS)

    def rows(self, threshold: float):
        verdicts = self.verdicts or [None] * len(self.paths)
        patients = self.patients or [None] * len(self.paths)
        for path, label, prob, verdict, patient in zip(self.paths, self.labels, self.probs, verdicts, patients):
            guard = (
                ("", "", "")
                if verdict is None
                else (int(verdict.in_distribution), f"{verdict.ood_score:.3f}", verdict.ood_reason)
            )
            prob = float(prob)
            decided = (int(decide(prob, threshold)), int(decide(prob, FIXED_THRESHOLD)), repr(float(threshold)))
            decided += (patient or "",)
            yield path, int(label), repr(prob), *decided, *guard

    def in_distribution(self) -> "Predictions":
        """The films the guard let through (all of them without verdicts)."""
        if self.verdicts is None:
            return self
        keep = np.array([v.in_distribution for v in self.verdicts], dtype=bool)
        return Predictions(
            [p for p, k in zip(self.paths, keep) if k],
            self.labels[keep],
            self.probs[keep],
            None if self.patients is None else [p for p, k in zip(self.patients, keep) if k],
            [v for v, k in zip(self.verdicts, keep) if k],
        )


def predict(
    model: nn.Module,
    loaded: LoadedImages,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
    shuffle_seed: int | None = None,
    description: str = "Predicting",
    guard=None,
    assess: bool = False,
) -> Predictions:
    """Predictions keyed by file; shuffle_seed runs the images in a random order (the result must not change).
    assess: give every file the guard's verdict (input checks alone when guard is None)."""

    order = None
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(loaded.samples))
    # the guard's input, only where there is a guard to read it (a foreign model has none: input checks only)
    features = np.empty((len(loaded.samples), pooled_width(model)), dtype=np.float32) if assess and guard else None
    probs = probability(predict_logits(model, loaded.images, batch_size, device, order, description, features))
    found = verdicts(guard, features, loaded.paths, loaded.images) if assess else [None] * len(probs)
    by_path = dict(zip(loaded.paths, zip(probs, found)))
    sample_by_path = {s.path: s for s in loaded.samples}
    paths = sorted(by_path)
    return Predictions(
        paths,
        np.array([sample_by_path[p].label for p in paths]),
        np.array([by_path[p][0] for p in paths]),
        [sample_by_path[p].patient_id for p in paths],
        [by_path[p][1] for p in paths] if assess else None,
    )


def tta_predictions(
    model: nn.Module, loaded: LoadedImages, as_is: Predictions, batch_size: int = BATCH_SIZE, device="cpu"
) -> tuple[Predictions, dict]:
    """`as_is` (predict()'s answer on the films as they are, with the guard's verdicts: the first view) with its
    probabilities replaced by their mean over the test-time views (evaluation/tta.py), and metrics.json's "tta"."""
    probs = {"as_is": as_is.probs}
    for view in track([v for v in VIEWS if v != "as_is"], "Test-time views"):
        found = predict(model, replace(loaded, images=view_images(loaded.images, view)), batch_size, device)
        if found.paths != as_is.paths:
            raise RuntimeError("a test-time view came back in another order than the films as they are")
        probs[view] = found.probs
    mean, record = combined(probs, as_is.labels)
    return replace(as_is, probs=mean), record


def metrics_at_thresholds(
    predictions: Predictions,
    thresholds: dict[str, float],
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> dict[str, dict]:
    metrics = BinaryMetrics(bootstrap_resamples=bootstrap_resamples, seed=seed)
    metrics.update(predictions.paths, predictions.labels, predictions.probs, predictions.patients)
    return {name: metrics.summary(t) for name, t in thresholds.items()}


def guard_record(
    predictions: Predictions,
    thresholds: dict[str, float],
    guard,
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> dict:
    """metrics.json's "guard": the share flagged (per class and reason) and the metrics on the films that passed."""

    record = guard_summary(predictions.verdicts, predictions.labels, guard)
    kept = predictions.in_distribution()
    both = len(set(kept.labels.tolist())) == 2
    record["metrics_in_distribution"] = (
        metrics_at_thresholds(kept, thresholds, bootstrap_resamples, seed) if both else None
    )
    return record


def population_records(predictions: Predictions, samples, thresholds: dict[str, float]) -> dict:
    """metrics.json's "by_population" (when the films come from two populations or more) and "by_stratum" (when a
    manifest recorded view, sex or age): evaluation.populations' metrics per group, at these thresholds, with the
    guard's flagged share per group."""
    by_path = {s.path: s for s in samples}
    chosen = [by_path[p] for p in predictions.paths]
    populations, strata = [s.population for s in chosen], [s.strata for s in chosen]
    labels, probs = predictions.labels, predictions.probs
    assessed = predictions.verdicts and all(v is not None for v in predictions.verdicts)
    flagged = [not v.in_distribution for v in predictions.verdicts] if assessed else None
    record = {"by_population": None, "by_stratum": None}
    if len({p for p in populations if p is not None}) > 1:
        record["by_population"] = group_metrics(labels, probs, populations, thresholds, flagged)
    if any(strata):
        record["by_stratum"] = strata_metrics(labels, probs, strata, thresholds, flagged)
    return record


def metrics_record(
    split: str,
    data_root,
    loaded: LoadedImages,
    checkpoint: str | None,
    metadata: dict,
    seed: int,
    described: dict,
    metrics: dict,
    leakage,
    guard: dict | None = None,
) -> dict:
    """metrics.json: the same layout whether `evaluate` or `run` wrote it."""

    return {
        "split": split,
        "data": {
            "root": str(data_root),
            "fingerprint": fingerprint(loaded.samples),
            "n_images": len(loaded.samples) + len(loaded.skipped),
            "n_evaluated": len(loaded.samples),
            "n_skipped": len(loaded.skipped),
        },
        "checkpoint": checkpoint,
        "weights": metadata.get("weights"),
        "seed": seed,
        "thresholds": described,
        "decision": decision_record(metadata),
        "metrics": metrics,
        "leakage": leakage.to_dict(),
        "guard": guard,
    }


def evaluate_split(
    session: InferenceSession,
    data_root: str,
    split: str,
    out_dir,
    batch_size: int = BATCH_SIZE,
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
    strict: bool = False,
    tta: bool = False,
) -> dict:
    """Evaluate the session's model on one split (only that split is needed) and write metrics.json, predictions.csv,
    skipped.csv. tta: the probabilities are the mean over the test-time views of evaluation/tta.py (metrics.json
    "tta"). Every forward pass runs in the session's precision.

    The evaluated files are checked against what the checkpoint saw (leakage); strict makes any overlap an error
    before anything is written, otherwise core.messages.warn says so and the counts go into metrics.json and
    leakage.csv.
    """

    model, metadata, device = session.model, session.meta, session.device
    samples = discover(data_root).split(split)
    loaded = load_images(samples, session.reads.image_size, description=f"Reading {split}")
    leakage = check_leakage(metadata, loaded.samples)
    enforce(leakage, strict, warn)
    loaded = session.reads.inputs(loaded)  # what the model reads: its --focus
    with session.running():
        predictions = predict(model, loaded, batch_size, device, guard=session.guard, assess=True)
        tta_record = None
        if tta:
            predictions, tta_record = tta_predictions(model, loaded, predictions, batch_size, device)
    thresholds, described = checkpoint_thresholds(metadata)
    metrics = metrics_at_thresholds(predictions, thresholds, bootstrap_resamples, seed)
    guarded = guard_record(predictions, thresholds, session.guard, bootstrap_resamples, seed)
    result = metrics_record(
        split, data_root, loaded, session.checkpoint, metadata, seed, described, metrics, leakage, guarded
    )
    result |= population_records(predictions, loaded.samples, thresholds)
    result["precision"] = session.precision_record()  # what the forward passes ran in; None: fp32, not recorded
    result["tta"] = tta_record  # None: each film read once, as it is
    out_dir = Path(out_dir)
    write_json(out_dir / METRICS, result)
    write_csv(out_dir / PREDICTIONS, Predictions.HEADER, predictions.rows(session.threshold))
    write_skipped(out_dir / SKIPPED, loaded.skipped)
    leakage.write_csv(out_dir / LEAKAGE)
    return result
