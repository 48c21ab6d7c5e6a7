"""Classification metrics as a small stateful object: update() with predictions, summary() per threshold.

Predictions are keyed by file path, so the order a loader yields them in cannot change any metric.
Every figure comes from scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from pneumocam import CLASS_NAMES
from pneumocam.core.defaults import BOOTSTRAP_RESAMPLES, SEED
from pneumocam.core.schema import FIXED_RULE, FIXED_THRESHOLD, decide
from pneumocam.evaluation.calibration import expected_calibration_error


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold and how it was chosen (the rule, and why it fell back when it did)."""

    value: float
    rule: str
    note: str | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "rule": self.rule, "note": self.note}


def youden_threshold(labels: np.ndarray, probs: np.ndarray) -> ThresholdChoice:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J) on these predictions.

    A model no better than chance on them (J <= 0, or an AUC below 0.5) has no useful cut: roc_curve would
    offer its first, infinite threshold (everything NORMAL). Then 0.5 is kept and the note says why.
    """

    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.min() == labels.max():
        return ThresholdChoice(
            FIXED_THRESHOLD, FIXED_RULE, "the validation split holds one class only: Youden's J is undefined"
        )
    fpr, tpr, thresholds = roc_curve(labels, probs)
    j = tpr - fpr
    best = int(np.argmax(j))
    auc = float(roc_auc_score(labels, probs))
    if j[best] <= 0 or auc < 0.5 or not np.isfinite(thresholds[best]):
        return ThresholdChoice(
            FIXED_THRESHOLD,
            FIXED_RULE,
            f"the model is no better than chance on the validation split (AUC {auc:.3f}, "
            f"best J {j[best]:.3f}): Youden's threshold was not used, 0.5 kept",
        )
    return ThresholdChoice(float(thresholds[best]), "Youden's J on the validation split")


def cluster_members(groups: np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


SPECIFICITY_FIXED = 0.85
SENSITIVITY_FIXED = 0.95


def roc_points(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(fpr, tpr, ROC-AUC): scikit-learn's roc_curve(drop_intermediate=False) points and roc_auc_score, from one sort
    with numpy. The bootstrap calls this a thousand times per split; scikit-learn's argument checks cost more than the
    sort (tests/test_metrics.py checks both against scikit-learn, ties included)."""
    labels = np.asarray(labels) == 1
    order = np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")
    scores = np.asarray(probs, dtype=np.float64)[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last film of each distinct score
    tps = np.cumsum(labels[order])[last]
    fps = last + 1 - tps
    if not tps[-1] or not fps[-1]:
        raise ValueError("only one class present: the ROC curve is undefined")  # as roc_auc_score says
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def operating_points(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """ROC-AUC, the best sensitivity with specificity >= 0.85, and the best specificity with sensitivity >= 0.95:
    the best point a threshold reaches on these scores (every threshold, no interpolation between points; roc_curve's
    default drop_intermediate would drop reachable points and understate them on tied scores)."""

    fpr, tpr, auc = roc_points(labels, probs)
    return {
        "roc_auc": auc,
        "sensitivity_at_specificity": float(tpr[fpr <= 1 - SPECIFICITY_FIXED + 1e-12].max()),
        "specificity_at_sensitivity": float((1 - fpr[tpr >= SENSITIVITY_FIXED - 1e-12]).max()),
    }


def bootstrap_cis(
    labels: np.ndarray,
    probs: np.ndarray,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of operating_points' figures, on the same draws; draws with one class are redrawn.

    Without groups, images are resampled. With groups (patient ids), whole patients are resampled with
    replacement (a cluster bootstrap): films of one child are not independent, so resampling films alone
    would understate the uncertainty.
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    rng = np.random.default_rng(seed)
    members = cluster_members(np.asarray(groups)) if groups is not None else None
    n, draws = (len(members) if members is not None else len(labels)), []
    while len(draws) < n_resamples:
        draw = rng.integers(0, n, n)
        idx = np.concatenate([members[i] for i in draw]) if members is not None else draw
        if labels[idx].min() != labels[idx].max():
            draws.append(operating_points(labels[idx], probs[idx]))
    quantiles = ((1 - level) / 2, (1 + level) / 2)
    return {k: tuple(float(q) for q in np.quantile([d[k] for d in draws], quantiles)) for k in draws[0]}


@dataclass
class BinaryMetrics:
    """Collects (path, label, probability[, patient]) rows; summary() returns the metrics at a threshold.

    When every row's patient is known the AUC interval resamples patients (cluster bootstrap); rows without a
    patient count as their own cluster, and `roc_auc_ci_unit` says which unit was resampled.
    """

    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = SEED

    def __post_init__(self):
        self._labels: dict[str, int] = {}
        self._probs: dict[str, float] = {}
        self._patients: dict[str, str | None] = {}

    def _threshold_free(self, labels, probs, both: bool):
        """Resampling unit, bootstrap CIs and operating points: the same at every threshold, so computed once."""
        key = len(self._probs)
        if getattr(self, "_cached", (None,))[0] != key:
            unit, groups = self.resampling_unit()
            cis = (
                bootstrap_cis(labels, probs, self.bootstrap_resamples, self.seed, groups=groups)
                if both and self.bootstrap_resamples
                else {}
            )
            self._cached = (key, (unit, groups, cis, operating_points(labels, probs) if both else {}))
        return self._cached[1]

    def update(self, paths, labels, probs, patients=None) -> None:
        patients = [None] * len(paths) if patients is None else patients
        for path, label, prob, patient in zip(paths, labels, probs, patients, strict=True):
            if path in self._probs:
                raise ValueError(f"prediction for {path} given twice")
            self._labels[path], self._probs[path], self._patients[path] = int(label), float(prob), patient

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        paths = sorted(self._probs)
        return paths, np.array([self._labels[p] for p in paths]), np.array([self._probs[p] for p in paths])

    def resampling_unit(self) -> tuple[str, np.ndarray | None]:
        """('patient', cluster ids) when any image has a patient id, else ('image', None)."""
        paths = sorted(self._probs)
        known = sum(self._patients[p] is not None for p in paths)
        if known == 0:
            return "image", None
        groups = np.array([self._patients[p] if self._patients[p] is not None else f"file:{p}" for p in paths])
        unit = (
            "patient"
            if known == len(paths)
            else f"patient ({len(paths) - known} images without a patient id count alone)"
        )
        return unit, groups

    def summary(self, threshold: float = FIXED_THRESHOLD) -> dict:
        """The metrics at one threshold (p >= threshold is PNEUMONIA), all from scikit-learn: threshold, n, accuracy,
        mean_loss, per_class / macro_avg / weighted_avg (precision, recall, f1, support), confusion_matrix, roc_auc,
        roc_auc_ci95 with roc_auc_ci_unit (patient or image), n_patients, sensitivity, specificity."""

        _, labels, probs = self.arrays()
        if len(labels) == 0:
            raise ValueError("no predictions to summarise")
        preds = decide(probs, threshold)
        precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=[0, 1], zero_division=0)
        per_class = {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASS_NAMES)
        }
        averages = {}
        for average in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=[0, 1], average=average, zero_division=0)
            averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(len(labels))}
        matrix = confusion_matrix(labels, preds, labels=[0, 1])
        tn, fp, fn, tp = (int(v) for v in matrix.ravel())
        both = labels.min() != labels.max()
        auc = float(roc_auc_score(labels, probs)) if both else None
        unit, groups, cis, points = self._threshold_free(labels, probs, both)
        ci = cis.get("roc_auc")
        return {
            "threshold": float(threshold),
            "n": int(len(labels)),
            "accuracy": float(accuracy_score(labels, preds)),
            "mean_loss": float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "per_class": per_class,
            "macro_avg": averages["macro"],
            "weighted_avg": averages["weighted"],
            "confusion_matrix": {"labels": list(CLASS_NAMES), "rows_true_cols_pred": matrix.tolist()},
            "roc_auc": auc,
            "roc_auc_ci95": list(ci) if ci else None,
            "roc_auc_ci_unit": unit if ci else None,
            "n_patients": int(len(np.unique(groups))) if groups is not None else None,
            f"sensitivity_at_specificity_{SPECIFICITY_FIXED}": {
                "value": points.get("sensitivity_at_specificity"),
                "ci95": list(cis["sensitivity_at_specificity"]) if cis else None,
            },
            f"specificity_at_sensitivity_{SENSITIVITY_FIXED}": {
                "value": points.get("specificity_at_sensitivity"),
                "ci95": list(cis["specificity_at_sensitivity"]) if cis else None,
            },
            "ece": expected_calibration_error(labels, probs),
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None,
        }
