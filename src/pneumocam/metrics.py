"""Classification metrics as a small stateful object: update() with predictions, summary() per threshold.

Predictions are keyed by file path, so the order a loader yields them in cannot change any metric.
Every figure comes from scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import CLASS_NAMES


def youden_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J) on these predictions."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, probs)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def bootstrap_auc_ci(labels: np.ndarray, probs: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ROC-AUC, resampling images; draws with one class only are redrawn."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n, aucs = len(labels), []
    while len(aucs) < n_resamples:
        idx = rng.integers(0, n, n)
        if labels[idx].min() != labels[idx].max():
            aucs.append(roc_auc_score(labels[idx], probs[idx]))
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@dataclass
class BinaryMetrics:
    """Collects (path, label, probability) triples; summary() returns the metrics at a threshold."""

    bootstrap_resamples: int = 1000
    seed: int = 0

    def __post_init__(self):
        self._labels: dict[str, int] = {}
        self._probs: dict[str, float] = {}

    def update(self, paths, labels, probs) -> None:
        for path, label, prob in zip(paths, labels, probs, strict=True):
            if path in self._probs:
                raise ValueError(f"prediction for {path} given twice")
            self._labels[path], self._probs[path] = int(label), float(prob)

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        paths = sorted(self._probs)
        return paths, np.array([self._labels[p] for p in paths]), np.array([self._probs[p] for p in paths])

    def summary(self, threshold: float = 0.5) -> dict:
        from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support, roc_auc_score

        _, labels, probs = self.arrays()
        if len(labels) == 0:
            raise ValueError("no predictions to summarise")
        preds = (probs >= threshold).astype(int)
        precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=[0, 1], zero_division=0)
        per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
                     for i, name in enumerate(CLASS_NAMES)}
        averages = {}
        for average in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=[0, 1], average=average, zero_division=0)
            averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(len(labels))}
        matrix = confusion_matrix(labels, preds, labels=[0, 1])
        tn, fp, fn, tp = (int(v) for v in matrix.ravel())
        both = labels.min() != labels.max()
        auc = float(roc_auc_score(labels, probs)) if both else None
        ci = bootstrap_auc_ci(labels, probs, self.bootstrap_resamples, self.seed) if both and self.bootstrap_resamples else None
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
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None,
        }
