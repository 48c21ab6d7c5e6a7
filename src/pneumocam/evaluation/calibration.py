"""Calibrated probabilities: temperature scaling (Guo et al. 2017) fitted on validation, and calibration error.

One scalar T divides the logit: p = sigmoid(logit / T). T is chosen to minimise the validation negative
log-likelihood, so it changes no ranking (AUC, and any threshold once mapped, are unchanged) but makes the
probabilities mean what they say. The expected calibration error (ECE) uses Guo et al.'s top-label form:
15 equal-width bins of confidence max(p, 1 - p), weighted |accuracy - mean confidence| per bin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from pneumocam.core.schema import FIXED_THRESHOLD, decide

N_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -z, z))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_BOUNDS minimising the mean negative log-likelihood of sigmoid(logit / T)."""

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    found = minimize_scalar(
        lambda log_t: _nll(logits, labels, float(np.exp(log_t))),
        bounds=tuple(np.log(TEMPERATURE_BOUNDS)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """Per confidence bin: its edges, image count, mean confidence and accuracy (empty bins have count 0)."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    confidence = np.maximum(probs, 1 - probs)
    correct = decide(probs, FIXED_THRESHOLD) == labels  # the top label of a binary classifier
    edges = np.linspace(0.5, 1.0, n_bins + 1)  # top-label confidence of a binary classifier lies in [0.5, 1]
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    bins = reliability_bins(labels, probs, n_bins)
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


@dataclass
class Calibration:
    """How a checkpoint's probabilities are calibrated (stored in model.pt; load_checkpoint applies it)."""

    method: str  # "temperature" or "none"
    temperature: float
    ece_before: float | None
    ece_after: float | None
    n_bins: int = N_BINS
    fitted_on: str = "validation split (the one that selected the epoch)"
    note: str | None = None  # why the fitted temperature was not used, when it was not

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(logits: np.ndarray, labels: np.ndarray, method: str = "temperature") -> Calibration:
    """Fit the calibration on validation logits; 'none' keeps T = 1 but still reports the ECE."""

    before = expected_calibration_error(labels, expit(logits))
    if method == "none":
        return Calibration("none", 1.0, before, before)
    temperature = fit_temperature(logits, labels)
    low, high = TEMPERATURE_BOUNDS
    if not low * 1.01 < temperature < high / 1.01:
        # At a bound the likelihood has no interior optimum: on a separable validation split it falls forever as
        # T -> 0 (every logit multiplied without end). That is no estimate of calibration: keep T = 1, say why.
        note = (
            f"the temperature fit reached its bound ({temperature:.3g} in [{low:g}, {high:g}]): the validation split "
            "is separable or degenerate, so no temperature was applied (T = 1)"
        )
        return Calibration("none", 1.0, before, before, note=note)
    return Calibration(
        "temperature", temperature, before, expected_calibration_error(labels, expit(np.asarray(logits) / temperature))
    )
