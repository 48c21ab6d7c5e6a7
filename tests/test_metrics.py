"""Metrics equal scikit-learn's; predictions joined by path cannot be scrambled by loader order."""

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix, log_loss, roc_auc_score, roc_curve

from pneumocam.metrics import BinaryMetrics, youden_threshold


@pytest.fixture
def predictions(rng):
    labels = (rng.random(300) < 0.7).astype(int)
    probs = np.clip(0.35 * labels + rng.random(300) * 0.65, 0, 1)
    paths = [f"/d/img{i:03d}.png" for i in range(300)]
    return paths, labels, probs


@pytest.mark.parametrize("threshold", [0.5, 0.62])
def test_summary_equals_sklearn(predictions, threshold):
    paths, labels, probs = predictions
    metrics = BinaryMetrics(bootstrap_resamples=200, seed=1)
    metrics.update(paths, labels, probs)
    s = metrics.summary(threshold)
    preds = (probs >= threshold).astype(int)
    report = classification_report(labels, preds, target_names=["NORMAL", "PNEUMONIA"], output_dict=True, zero_division=0)
    for name in ("NORMAL", "PNEUMONIA"):
        for key in ("precision", "recall", "f1-score", "support"):
            ours = s["per_class"][name]["f1" if key == "f1-score" else key]
            assert ours == pytest.approx(report[name][key], abs=1e-12)
    for ours, theirs in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        assert s[ours]["f1"] == pytest.approx(report[theirs]["f1-score"], abs=1e-12)
        assert s[ours]["precision"] == pytest.approx(report[theirs]["precision"], abs=1e-12)
    assert s["accuracy"] == pytest.approx(report["accuracy"], abs=1e-12)
    cm = confusion_matrix(labels, preds)
    assert s["confusion_matrix"]["rows_true_cols_pred"] == cm.tolist()
    assert s["sensitivity"] == pytest.approx(cm[1, 1] / cm[1].sum()) and s["specificity"] == pytest.approx(cm[0, 0] / cm[0].sum())
    assert s["roc_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert s["mean_loss"] == pytest.approx(log_loss(labels, probs.clip(1e-7, 1 - 1e-7)), abs=1e-12)
    low, high = s["roc_auc_ci95"]
    assert low < s["roc_auc"] < high and high - low < 0.2


def test_order_of_updates_cannot_change_metrics(predictions, rng):
    paths, labels, probs = predictions
    a = BinaryMetrics(bootstrap_resamples=100)
    a.update(paths, labels, probs)
    perm = rng.permutation(len(paths))
    b = BinaryMetrics(bootstrap_resamples=100)
    for chunk in np.array_split(perm, 7):
        b.update([paths[i] for i in chunk], labels[chunk], probs[chunk])
    assert a.summary() == b.summary()


def test_positional_join_with_shuffled_labels_reproduces_the_original_bug(predictions, rng):
    """Comparing predictions by position with a shuffled generator's labels gives precisions equal to the priors."""
    paths, labels, probs = predictions
    shuffled_labels = labels[rng.permutation(len(labels))]
    wrong = classification_report(shuffled_labels, (probs >= 0.5).astype(int), output_dict=True)
    assert wrong["1"]["precision"] == pytest.approx(labels.mean(), abs=0.08)
    right = BinaryMetrics(bootstrap_resamples=0)
    right.update(paths, labels, probs)
    assert right.summary()["per_class"]["PNEUMONIA"]["precision"] > labels.mean() + 0.15


def test_youden_threshold_maximises_j(predictions):
    _, labels, probs = predictions
    t = youden_threshold(labels, probs)
    fpr, tpr, thresholds = roc_curve(labels, probs)
    j = lambda th: np.mean(probs[labels == 1] >= th) - np.mean(probs[labels == 0] >= th)
    assert j(t) == pytest.approx(max(tpr - fpr), abs=1e-12)


def test_duplicate_prediction_is_refused(predictions):
    paths, labels, probs = predictions
    metrics = BinaryMetrics()
    metrics.update(paths[:2], labels[:2], probs[:2])
    with pytest.raises(ValueError, match="given twice"):
        metrics.update(paths[:1], labels[:1], probs[:1])
