"""The run folder's schema, torch-free and at the bottom: its file names, the threshold keys and the one rule that
picks the threshold every decision uses, and what each column of its tables means.

Every module that writes or reads a run folder (evaluate, the experiment's writer, report, serve, compare) takes
names and the decision rule from here, so a `pred` column means the same thing in every file and a report or the
viewer can say which threshold decided without importing the model code.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from pneumocam import CLASS_NAMES
from pneumocam.core.outputs import atomic_write_bytes

# ----------------------------------------------------------------------------------------------- file names
CONFIG = "config.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
IMPORTANCE = "importance.csv"
HEATMAPS = "heatmaps.npz"
STATS = "stats.json"
RESULTS = "results.json"
SKIPPED = "skipped.csv"
LEAKAGE = "leakage.csv"
FIGURES = "figures"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"

# ----------------------------------------------------------------------------------------------- thresholds
FIXED_THRESHOLD = 0.5  # the threshold of a model that recorded no validation-chosen one
FIXED_KEY = "threshold_0.5"  # metrics.json / results.json "metrics" key of the metrics at FIXED_THRESHOLD
VALIDATION_KEY = "threshold_youden_val"  # ... at the threshold chosen on the checkpoint's validation split
FIXED_RULE = "fixed 0.5"


def decision_key(thresholds: Mapping) -> str:
    """The threshold rule, declared once: decisions use the threshold chosen on the checkpoint's validation split
    (Youden's J, evaluation.metrics.youden_threshold) when one is recorded, else the fixed 0.5.

    thresholds: anything keyed by the metrics keys (metrics.json's "metrics" or "thresholds")."""
    return VALIDATION_KEY if VALIDATION_KEY in thresholds else FIXED_KEY


def decide(probs, threshold: float) -> np.ndarray:
    """The decision (1: PNEUMONIA) of each probability at this threshold: p >= threshold."""
    return (np.asarray(probs, dtype=np.float64) >= float(threshold)).astype(np.int8)


def checkpoint_thresholds(metadata: dict) -> tuple[dict[str, float], dict[str, str]]:
    """The thresholds to report for a checkpoint: 0.5 and the one chosen on its validation split, each described."""
    thresholds, described = {FIXED_KEY: FIXED_THRESHOLD}, {FIXED_KEY: FIXED_RULE}
    recorded = metadata.get("thresholds", {})
    if recorded.get("youden_val") is not None:
        thresholds[VALIDATION_KEY] = float(recorded["youden_val"])
        described[VALIDATION_KEY] = recorded.get("youden_rule") or "Youden's J on the validation split"
        if recorded.get("youden_note"):
            described[VALIDATION_KEY] += f" ({recorded['youden_note']})"
    return thresholds, described


def decision_threshold(metadata: dict) -> tuple[float, str, str]:
    """(value, the key in metrics.json's thresholds, how it was chosen): the threshold every command decides at,
    by core.schema.decision_key's rule."""
    thresholds, described = checkpoint_thresholds(metadata)
    key = decision_key(thresholds)
    return thresholds[key], key, described[key]


def decision_record(metadata: dict) -> dict:
    """metrics.json's "decision": which threshold predictions.csv's pred (and predict, serve) decide at."""
    value, key, how = decision_threshold(metadata)
    return {"threshold": value, "metrics_key": key, "chosen": how, "predictions_csv_column": "pred"}


def recorded_decision(record: Mapping) -> tuple[float, str] | None:
    """(threshold, metrics key) a run's record says its `pred` columns were decided at: its "decision" entry when it
    has one, else the rule over its "metrics". None when neither holds a finite number (a foreign or broken record:
    the caller says "unknown" rather than guessing 0.5)."""
    decision = record.get("decision")
    if isinstance(decision, Mapping) and _finite(decision.get("threshold")):
        return float(decision["threshold"]), str(decision.get("metrics_key", ""))
    metrics = record.get("metrics")
    if isinstance(metrics, Mapping):
        key = decision_key(metrics)
        entry = metrics.get(key)
        if isinstance(entry, Mapping) and _finite(entry.get("threshold")):
            return float(entry["threshold"]), key
    return None


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


# ----------------------------------------------------------------------------------------------- regions
# The anatomical regions a map's mass is split into (analysis/regions.py): importance.csv's share_<region> columns and
# results.json's attention keys.
REGIONS = ("lungs", "diaphragm", "body_other", "outside_body")
REGION_TEXT = {
    "lungs": "lung fields (incl. behind the heart)",
    "diaphragm": "a band just below each lung's lower border",
    "body_other": "the body outside the lungs and the diaphragm band (mediastinum, shoulders, abdomen)",
    "outside_body": "the blank border outside the body, with burnt-in text and markers",
}

# ----------------------------------------------------------------------------------------------- columns
# What each column of the run's tables means (docs/results.md lists these; tests/test_experiment.py reads the files
# against them). `pred` is always decided at the model's decision threshold, named in the `threshold` column.
PREDICTIONS_COLUMNS = {
    "path": "the film, as discovered (relative paths start at provenance.working_directory)",
    "label": "0 NORMAL, 1 PNEUMONIA",
    "prob_pneumonia": "the calibrated probability of PNEUMONIA (repr: round-trips exactly)",
    "pred": "the decision at `threshold` (1: PNEUMONIA)",
    "pred_at_0.5": "the decision at the fixed 0.5, shown beside it",
    "threshold": "the decision threshold (decision_key: validation-chosen when recorded, else 0.5)",
    "patient_id": "the patient, when known (bootstrap intervals resample patients)",
    "in_distribution": "the domain-shift guard's verdict (1 passed, 0 flagged)",
    "ood_score": "the guard's score",
    "ood_reason": "why the guard flagged the film",
}
IMPORTANCE_COLUMNS = {
    "path": PREDICTIONS_COLUMNS["path"],
    "label": "NORMAL or PNEUMONIA",
    "pred": "the decision at `threshold`, as a class name",
    "threshold": PREDICTIONS_COLUMNS["threshold"],
    "prob_pneumonia": "the probability of PNEUMONIA (6 decimals)",
    "cam_target": "the class the map explains",
}  # then one column per score, `lung_source` and `in_distribution`


def write_heatmaps(path, result, paths: list[str], labels, image_size: int, threshold: float) -> None:
    """heatmaps.npz: plain arrays only (no pickled objects), enough to recompute any score without the model.
    result: the maps and what they explain (explain.cam.CamResult); preds are decided at `threshold`, the run's
    decision threshold, which is stored beside them."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        paths=np.array(paths, dtype=str),
        labels=np.asarray(labels, dtype=np.int8),
        probs=result.probs.astype(np.float32),
        preds=decide(result.probs, threshold),
        threshold=np.array(float(threshold)),
        targets=result.targets.astype(np.int8),
        maps=result.maps.astype(np.float32),
        method=np.array(result.method),
        layer=np.array(result.layer),
        normalised=np.array(result.normalised),
        image_size=np.array(image_size),
        class_names=np.array(CLASS_NAMES),
    )
    atomic_write_bytes(path, buffer.getvalue())
