"""Metrics per population and per recorded stratum, thresholds that travel between populations, and validation by
whole population. Pure functions of labels, probabilities and group names.

A ranking can transfer to films of another place or time while a threshold does not: a model whose validation chose
t can keep its ROC-AUC on a new population and still call a third of its NORMAL films PNEUMONIA. So each population
is reported at the same thresholds (sensitivity, specificity, accuracy), beside rules that may hold up under shift:
- `validation`: the threshold the model recorded (Youden's J on its validation split);
- `sensitivity_target`: the highest threshold whose sensitivity on the validation predictions is at least a target
  (a screening rule: it fixes what matters most and lets specificity move);
- `recalibrated`: Youden's J on a small labelled sample of the new population (its size stated), judged on the rest
  of that population only, so the sample never scores itself.
A stratum (view, sex, age band, from a manifest) gets its own ROC-AUC: a model that reads "AP film" rather than
pneumonia shows as an AUC that holds across classes but not within a view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumocam import CLASS_NAMES
from pneumocam.core.defaults import SEED
from pneumocam.core.schema import decide
from pneumocam.evaluation.calibration import expected_calibration_error
from pneumocam.evaluation.metrics import youden_threshold

RECALIBRATION_FILMS = 50  # labelled films of the new population the `recalibrated` rule may see (half per class)
SENSITIVITY_TARGET = 0.95


def at_threshold(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Sensitivity, specificity and accuracy of the decisions p >= threshold (None where a class is absent)."""
    labels, pred = np.asarray(labels), decide(probs, threshold)
    pos, neg = labels == 1, labels == 0
    return {
        "threshold": float(threshold),
        "sensitivity": float(pred[pos].mean()) if pos.any() else None,
        "specificity": float(1 - pred[neg].mean()) if neg.any() else None,
        "accuracy": float((pred == labels).mean()) if len(labels) else None,
    }


def group_metrics(labels, probs, groups: Sequence, thresholds: dict[str, float], flagged=None) -> dict[str, dict]:
    """Per group (population or stratum value; None rows left out): counts, ROC-AUC (None with one class), expected
    calibration error (evaluation.calibration), the decisions at each named threshold and, given `flagged` (one bool
    per film: the domain-shift guard's verdict), the share of the group's films the guard flagged."""
    labels, probs, groups = np.asarray(labels), np.asarray(probs, dtype=np.float64), np.asarray(groups, dtype=object)
    out = {}
    for name in sorted({g for g in groups if g is not None}, key=str):
        member = groups == name
        y, p = labels[member], probs[member]
        out[str(name)] = {
            "n": int(member.sum()),
            **{f"n_{c.lower()}": int((y == i).sum()) for i, c in enumerate(CLASS_NAMES)},
            "roc_auc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None,
            "ece": expected_calibration_error(y, p),  # calibration may not travel either
            "at": {key: at_threshold(y, p, t) for key, t in thresholds.items()},
        }
        if flagged is not None:
            out[str(name)]["share_flagged"] = float(np.asarray(flagged, dtype=bool)[member].mean())
    return out


def strata_metrics(labels, probs, strata: Sequence[tuple], thresholds: dict[str, float], flagged=None) -> dict:
    """group_metrics for each recorded stratum (view, sex, age band): {stratum name: {value: metrics}}."""
    names = sorted({name for row in strata for name, _ in row})
    return {
        name: group_metrics(labels, probs, [dict(row).get(name) for row in strata], thresholds, flagged)
        for name in names
    }


def sensitivity_threshold(labels, probs, target: float = SENSITIVITY_TARGET) -> float:
    """The highest threshold at which at least `target` of the PNEUMONIA films are called PNEUMONIA."""
    positives = np.sort(np.asarray(probs, dtype=np.float64)[np.asarray(labels) == 1])
    if not len(positives):
        raise ValueError("no PNEUMONIA films: a sensitivity target is undefined")
    allowed_misses = int(np.floor((1 - target) * len(positives) + 1e-9))
    return float(positives[allowed_misses])


def recalibration_sample(labels, n: int = RECALIBRATION_FILMS, seed: int = SEED) -> np.ndarray:
    """Indices of a class-balanced random sample of n films (n // 2 per class, fewer where a class is smaller)."""
    labels, rng = np.asarray(labels), np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), min(n // 2, int((labels == c).sum())), replace=False) for c in (0, 1)
    ]
    return np.sort(np.concatenate(chosen))


def travelling_thresholds(
    val_labels,
    val_probs,
    labels,
    probs,
    groups: Sequence,
    recorded: float,
    n_recalibration=RECALIBRATION_FILMS,
    seed=SEED,
) -> dict:
    """How each rule's threshold does per population: the recorded one, the sensitivity target's (both chosen on the
    validation predictions), and one recalibrated on n_recalibration films of each population (judged on the rest)."""
    labels, probs, groups = np.asarray(labels), np.asarray(probs, dtype=np.float64), np.asarray(groups, dtype=object)
    target = sensitivity_threshold(val_labels, val_probs)
    rules = {"validation": recorded, "sensitivity_target": target}
    out = {
        "rules": {
            "validation": "the model's recorded threshold (Youden's J on its validation split)",
            "sensitivity_target": f"the highest threshold with sensitivity >= {SENSITIVITY_TARGET} on validation",
            "recalibrated": f"Youden's J on {n_recalibration} labelled films of the population (half per class), "
            "scored on its other films",
        },
        "validation": {k: at_threshold(val_labels, val_probs, t) for k, t in rules.items()},
        "populations": {},
    }
    for name in sorted({g for g in groups if g is not None}, key=str):
        member = np.flatnonzero(groups == name)
        y, p = labels[member], probs[member]
        sample = recalibration_sample(y, n_recalibration, seed)
        rest = np.setdiff1d(np.arange(len(y)), sample)
        fitted = youden_threshold(y[sample], p[sample])
        found = {k: at_threshold(y, p, t) for k, t in rules.items()}
        found["recalibrated"] = at_threshold(y[rest], p[rest], fitted.value) | {
            "n_fitted_on": int(len(sample)),
            "n_scored": int(len(rest)),
        }
        out["populations"][str(name)] = found
    return out


def leave_one_population_out(populations: Sequence) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out population, training indices, validation indices) for each population: validation is that whole
    population, training every other one. Films with no population belong to no fold's validation (always trained
    on)."""
    populations = np.asarray(populations, dtype=object)
    names = sorted({p for p in populations if p is not None}, key=str)
    if len(names) < 2:
        raise ValueError(f"leave-one-population-out needs two populations or more, got {names}")
    return [(str(n), np.flatnonzero(populations != n), np.flatnonzero(populations == n)) for n in names]
