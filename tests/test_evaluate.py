"""evaluation/evaluate: the guard's record in metrics.json, checked against hand counts and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from pneumocam.evaluation.evaluate import Predictions, guard_record
from pneumocam.model.guard import Verdict, guard_summary


def _verdicts(flags: list[str]) -> list[Verdict]:
    """'' passes; any other text is the reason the film was flagged."""
    return [Verdict(not reason, 1.0 if not reason else 9.0, reason) for reason in flags]


def test_guard_summary_counts_flags_per_class_and_reason_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    found = _verdicts(["", "features 7.1 > 5.0", "", "not a chest film: colour", "", "features 9.9 > 5.0", ""])
    summary = guard_summary(found, labels, None)
    # flagged: rows 1 and 3 (NORMAL), row 5 (PNEUMONIA): 3 of 7; NORMAL 2 of 4, PNEUMONIA 1 of 3
    assert summary["n_flagged"] == 3 and summary["share_flagged"] == pytest.approx(3 / 7)
    assert summary["share_flagged_by_class"] == {"NORMAL": pytest.approx(0.5), "PNEUMONIA": pytest.approx(1 / 3)}
    # every feature-distance reason is one kind, whatever its numbers; an input check keeps its own words
    assert summary["reasons"] == {"features unlike the training films": 2, "not a chest film: colour": 1}
    assert summary["fitted"] is False and summary["threshold"] is None


def test_metrics_in_distribution_are_sklearns_on_the_films_that_passed():
    rng = np.random.default_rng(5)
    labels = np.array([0] * 12 + [1] * 12)
    probs = np.clip(labels * 0.3 + rng.random(24) * 0.7, 0, 1)
    flags = ["" if i % 3 else "features far" for i in range(24)]  # every third film flagged: 8 of 24
    predictions = Predictions([f"f{i}.png" for i in range(24)], labels, probs, None, _verdicts(flags))
    record = guard_record(predictions, {"at_0.5": 0.5, "at_0.4": 0.4}, None, bootstrap_resamples=0)
    kept = np.array([bool(f == "") for f in flags])
    assert kept.sum() == 16 and record["n_flagged"] == 8
    inside = record["metrics_in_distribution"]
    for name, threshold in (("at_0.5", 0.5), ("at_0.4", 0.4)):
        assert inside[name]["n"] == 16
        assert inside[name]["roc_auc"] == pytest.approx(roc_auc_score(labels[kept], probs[kept]), abs=1e-12)
        expected = accuracy_score(labels[kept], (probs[kept] >= threshold).astype(int))
        assert inside[name]["accuracy"] == pytest.approx(expected, abs=1e-12)
    # and they differ from the metrics on every film, so the test can tell the two apart
    assert inside["at_0.5"]["roc_auc"] != pytest.approx(roc_auc_score(labels, probs), abs=1e-6)


def test_no_metrics_in_distribution_when_one_class_is_left():
    labels = np.array([0, 0, 1, 1])
    flags = ["", "", "features far", "features far"]
    predictions = Predictions(["a", "b", "c", "d"], labels, np.array([0.1, 0.2, 0.8, 0.9]), None, _verdicts(flags))
    assert guard_record(predictions, {"at_0.5": 0.5}, None, bootstrap_resamples=0)["metrics_in_distribution"] is None
