"""Metrics equal scikit-learn's; predictions joined by path cannot be scrambled by loader order."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix, log_loss, roc_auc_score, roc_curve

from pneumocam.evaluation.metrics import BinaryMetrics, youden_threshold


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
    report = classification_report(
        labels, preds, target_names=["NORMAL", "PNEUMONIA"], output_dict=True, zero_division=0
    )
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
    assert s["sensitivity"] == pytest.approx(cm[1, 1] / cm[1].sum()) and s["specificity"] == pytest.approx(
        cm[0, 0] / cm[0].sum()
    )
    assert s["roc_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert s["mean_loss"] == pytest.approx(log_loss(labels, probs.clip(1e-7, 1 - 1e-7)), abs=1e-12)
    assert s["roc_auc_ci_unit"] == "image" and s["n_patients"] is None


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by its definition: the share of (PNEUMONIA, NORMAL) pairs ranked right, ties counting one half."""
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def exact_bootstrap(clusters: list[np.ndarray], labels: np.ndarray, statistic) -> np.ndarray:
    """The whole bootstrap distribution, enumerated: every draw of len(clusters) clusters with replacement (all
    equally likely), each bringing all of its films; draws holding one class only have no AUC and are left out."""
    values = []
    for drawn in itertools.product(range(len(clusters)), repeat=len(clusters)):
        idx = np.concatenate([clusters[k] for k in drawn])
        if labels[idx].min() != labels[idx].max():
            values.append(statistic(idx))
    return np.array(values)


def assert_percentile_interval_of(interval, exact: np.ndarray, resamples: int):
    """A percentile interval from `resamples` random draws sits at the 2.5% and 97.5% points of the exact
    distribution, within the Monte Carlo error of a quantile (4 standard errors; the distribution is discrete, so
    each end is checked by the share of exact values on either side of it)."""
    tolerance = 4 * np.sqrt(0.025 * 0.975 / resamples)
    for end, q in zip(interval, (0.025, 0.975)):
        below, at_or_below = np.mean(exact < end - 1e-12), np.mean(exact <= end + 1e-12)
        assert below <= q + tolerance and at_or_below >= q - tolerance, (end, q, below, at_or_below)


def test_auc_interval_is_the_percentile_bootstrap_enumerated_over_images():
    labels = np.array([0, 1, 0, 1, 1])
    probs = np.array([0.2, 0.7, 0.6, 0.4, 0.9])
    metrics = BinaryMetrics(bootstrap_resamples=2000, seed=11)
    metrics.update([f"f{i}" for i in range(5)], labels, probs)
    s = metrics.summary()
    exact = exact_bootstrap([np.array([i]) for i in range(5)], labels, lambda i: mann_whitney_auc(labels[i], probs[i]))
    assert len(exact) == 5**5 - 2**5 - 3**5 + 0  # 3125 draws less those of one class only (by hand: 32 + 243)
    assert_percentile_interval_of(s["roc_auc_ci95"], exact, 2000)
    assert s["roc_auc_ci_unit"] == "image"


def test_auc_interval_resamples_patients_when_known():
    """A cluster bootstrap: whole patients drawn with replacement, each bringing all of their films; enumerated
    exactly on 4 patients of 2 films (labels differ inside one of them: still one cluster)."""
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    probs = np.array([0.1, 0.5, 0.8, 0.3, 0.45, 0.6, 0.55, 0.9])
    patients = [f"p{i // 2}" for i in range(8)]
    metrics = BinaryMetrics(bootstrap_resamples=2000, seed=7)
    metrics.update([f"f{i}" for i in range(8)], labels, probs, patients)
    s = metrics.summary()
    clusters = [np.array([2 * k, 2 * k + 1]) for k in range(4)]
    exact = exact_bootstrap(clusters, labels, lambda i: mann_whitney_auc(labels[i], probs[i]))
    assert_percentile_interval_of(s["roc_auc_ci95"], exact, 2000)
    assert s["roc_auc_ci_unit"] == "patient" and s["n_patients"] == 4
    film_level = BinaryMetrics(bootstrap_resamples=2000, seed=7)
    film_level.update([f"f{i}" for i in range(8)], labels, probs)
    with pytest.raises(AssertionError):  # the check tells a film-level bootstrap from the patient one
        assert_percentile_interval_of(film_level.summary()["roc_auc_ci95"], exact, 2000)


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
    choice = youden_threshold(labels, probs)
    t = choice.value
    assert choice.note is None and 0.2 < t < 0.9
    fpr, tpr, thresholds = roc_curve(labels, probs)

    def j(th):
        return np.mean(probs[labels == 1] >= th) - np.mean(probs[labels == 0] >= th)

    assert j(t) == pytest.approx(max(tpr - fpr), abs=1e-12)


def test_duplicate_prediction_is_refused(predictions):
    paths, labels, probs = predictions
    metrics = BinaryMetrics()
    metrics.update(paths[:2], labels[:2], probs[:2])
    with pytest.raises(ValueError, match="given twice"):
        metrics.update(paths[:1], labels[:1], probs[:1])


def test_youden_on_a_worse_than_chance_model_falls_back_to_half_and_says_so():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])  # perfectly inverted: roc_curve's best J is its infinite first cut
    choice = youden_threshold(labels, probs)
    assert choice.value == 0.5 and "no better than chance" in choice.note and choice.rule == "fixed 0.5"
    assert choice.to_dict() == {"value": 0.5, "rule": "fixed 0.5", "note": choice.note}  # what metrics.json keeps
    assert youden_threshold(np.array([1, 1]), np.array([0.2, 0.3])).value == 0.5


def test_operating_points_by_hand():
    """Sensitivity at specificity >= 0.85 and specificity at sensitivity >= 0.95, counted by sweeping thresholds."""
    from pneumocam.evaluation.metrics import operating_points

    rng = np.random.default_rng(3)
    labels = (rng.random(200) < 0.5).astype(int)
    probs = np.clip(0.3 * labels + rng.random(200) * 0.7, 0, 1)
    sens_at, spec_at = 0.0, 0.0
    for t in np.concatenate([np.unique(probs), [np.inf]]):
        pred = probs >= t
        sens, spec = pred[labels == 1].mean(), (~pred[labels == 0]).mean()
        if spec >= 0.85:
            sens_at = max(sens_at, sens)
        if sens >= 0.95:
            spec_at = max(spec_at, spec)
    points = operating_points(labels, probs)
    assert points["sensitivity_at_specificity"] == pytest.approx(sens_at)
    assert points["specificity_at_sensitivity"] == pytest.approx(spec_at)
    metrics = BinaryMetrics(bootstrap_resamples=50)
    metrics.update([f"/x/{i}" for i in range(200)], labels, probs)
    s = metrics.summary()
    assert s["sensitivity_at_specificity_0.85"]["value"] == pytest.approx(sens_at)
    assert s["specificity_at_sensitivity_0.95"]["value"] == pytest.approx(spec_at)


def test_fixed_operating_points_on_tied_scores_equal_a_full_threshold_sweep():
    """Integer scores with many ties (seeds 109 and 123 are cases where roc_curve's default drop_intermediate
    dropped the best reachable point): the best sensitivity at specificity >= 0.85 and the best specificity at
    sensitivity >= 0.95 equal a brute-force sweep over every threshold, written here."""
    from pneumocam.evaluation.metrics import operating_points

    def sweep(labels, scores):
        best_sens, best_spec = 0.0, 0.0
        for t in np.append(np.unique(scores), np.inf):
            called = scores >= t
            sens, spec = called[labels == 1].mean(), (~called[labels == 0]).mean()
            if spec >= 0.85 - 1e-12:
                best_sens = max(best_sens, sens)
            if sens >= 0.95 - 1e-12:
                best_spec = max(best_spec, spec)
        return best_sens, best_spec

    for seed in (109, 123, *range(20)):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, 40)
        scores = (rng.integers(0, 5, 40) + labels).astype(float)
        points = operating_points(labels, scores)
        assert (points["sensitivity_at_specificity"], points["specificity_at_sensitivity"]) == pytest.approx(
            sweep(labels, scores)
        ), seed


def test_films_without_a_patient_id_are_each_their_own_cluster():
    """Two patients (two films each) and three films without an id: five clusters by hand, never one cluster of
    the unknown films."""
    metrics = BinaryMetrics(bootstrap_resamples=10)
    paths = [f"f{i}.png" for i in range(7)]
    patients = ["A", "A", "B", "B", None, None, None]
    metrics.update(paths, [0, 1, 0, 1, 0, 1, 1], [0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.9], patients)
    unit, groups = metrics.resampling_unit()
    assert unit.startswith("patient") and "3 images without a patient id" in unit
    assert len(set(groups.tolist())) == 5


@pytest.mark.parametrize(
    "labels, probs, threshold",
    [
        ([1, 0, 0, 1], [0.4, 0.3, 0.2, 0.1], 0.4),  # AUC exactly 0.5 with J = 0.5 > 0: the cut is kept
        ([1, 0, 1, 0, 0, 1], [0.9, 0.8, 0.1, 0.7, 0.6, 0.05], 0.5),  # AUC 1/3 < 0.5 though J > 0 at 0.9: 0.5 kept
        ([1, 1, 1], [0.2, 0.6, 0.9], 0.5),  # one class: undefined, 0.5 kept
    ],
)
def test_youden_s_fallbacks_by_hand(labels, probs, threshold):
    from pneumocam.evaluation.metrics import youden_threshold

    found = youden_threshold(np.array(labels), np.array(probs))
    assert found.value == threshold
    if threshold == 0.5:
        assert found.rule == "fixed 0.5" and found.note
    else:
        assert found.rule == "Youden's J on the validation split" and found.note is None


def test_roc_points_are_scikit_learns_curve_and_auc_ties_included():
    from sklearn.metrics import roc_auc_score, roc_curve

    from pneumocam.evaluation.metrics import roc_points

    rng = np.random.default_rng(7)
    checked = 0
    for n, levels in ((12, 3), (40, 6), (200, 1000), (7, 2)):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        probs = rng.integers(0, levels, n) / levels  # few levels: many ties
        fpr, tpr, auc = roc_points(labels, probs)
        ref_fpr, ref_tpr, _ = roc_curve(labels, probs, drop_intermediate=False)
        np.testing.assert_allclose(fpr, ref_fpr, atol=1e-15)
        np.testing.assert_allclose(tpr, ref_tpr, atol=1e-15)
        assert auc == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
        checked += len(np.unique(probs)) < n  # a case with tied scores
    assert checked >= 3
    with pytest.raises(ValueError, match="one class"):
        roc_points(np.zeros(4), np.linspace(0, 1, 4))


def test_a_summary_of_one_class_with_certain_probabilities_keeps_both_classes_rows():
    """All films NORMAL, two of them scored exactly 0 and 1: the per-class table and the confusion matrix still have
    a PNEUMONIA row (zeros, scikit-learn with labels=[0, 1] and zero_division=0), the loss clips the certain
    probabilities (finite, by hand), no AUC, and an empty summary is refused."""
    import math

    metrics = BinaryMetrics(bootstrap_resamples=0)
    probs = np.array([0.0, 0.2, 0.7, 1.0])
    metrics.update([f"f{i}.png" for i in range(4)], np.zeros(4, int), probs)
    found = metrics.summary(0.5)
    assert found["per_class"]["PNEUMONIA"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert found["per_class"]["NORMAL"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 4}
    assert found["macro_avg"]["recall"] == pytest.approx(0.25) and found["macro_avg"]["f1"] == pytest.approx(1 / 3)
    assert found["confusion_matrix"]["rows_true_cols_pred"] == [[2, 2], [0, 0]]
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    assert found["mean_loss"] == pytest.approx(-np.mean(np.log(1 - clipped)))
    assert math.isfinite(found["mean_loss"]) and found["roc_auc"] is None
    with pytest.raises(ValueError, match="no predictions to summarise"):
        BinaryMetrics().summary()
    one = BinaryMetrics(bootstrap_resamples=0)
    one.update(["a.png"], np.array([1]), np.array([0.9]))
    assert one.summary()["n"] == 1  # one film is a summary, not an empty one


def test_operating_points_reach_a_specificity_of_exactly_085_and_a_sensitivity_of_exactly_095():
    """20 films per class, scored so the curve passes through (fpr 3/20, tpr 19/20) exactly: the best sensitivity
    with specificity >= 0.85 is 0.95 there, and the best specificity with sensitivity >= 0.95 is 0.85 there
    (points, by hand: (0, .5) (.05, .5) (.10, .5) (.10, .75) (.15, .75) (.15, .95) (1, .95) (1, 1))."""
    from pneumocam.evaluation.metrics import operating_points

    positives = [0.95] * 10 + [0.75] * 5 + [0.65] * 4 + [0.05]
    negatives = [0.9, 0.8, 0.7] + [0.1] * 17
    labels, probs = np.array([1] * 20 + [0] * 20), np.array(positives + negatives)
    found = operating_points(labels, probs)
    assert found["sensitivity_at_specificity"] == pytest.approx(0.95)
    assert found["specificity_at_sensitivity"] == pytest.approx(0.85)
    assert found["roc_auc"] == pytest.approx(roc_auc_score(labels, probs))


def test_a_bootstrap_of_one_draw_and_an_interval_of_level_zero_close_on_one_value(predictions):
    """One resample: both ends are that draw's value; level 0: both ends are the median of the draws."""
    from pneumocam.evaluation.metrics import bootstrap_cis

    _, labels, probs = predictions
    for found in (bootstrap_cis(labels, probs, 1, 3), bootstrap_cis(labels, probs, 200, 3, level=0.0)):
        assert set(found) == {"roc_auc", "sensitivity_at_specificity", "specificity_at_sensitivity"}
        assert all(low == high for low, high in found.values()), found
    assert bootstrap_cis(labels, probs, 200, 3)["roc_auc"][0] < bootstrap_cis(labels, probs, 200, 3)["roc_auc"][1]


def test_the_summary_carries_its_seed_s_intervals_and_every_key_a_report_reads(predictions):
    """Seed 7 (not the default; a different seed gives other intervals, checked): the AUC and both operating points'
    intervals are bootstrap_cis's with that seed; the ECE is calibration's; the confusion matrix names its labels."""
    from pneumocam.evaluation.calibration import expected_calibration_error
    from pneumocam.evaluation.metrics import SENSITIVITY_FIXED, SPECIFICITY_FIXED, bootstrap_cis

    paths, labels, probs = predictions
    metrics = BinaryMetrics(bootstrap_resamples=100, seed=7)
    metrics.update(paths, labels, probs)
    found = metrics.summary(0.5)
    order = np.argsort(paths)  # the summary reads its rows in path order
    cis = bootstrap_cis(labels[order], probs[order], 100, 7)
    assert cis != bootstrap_cis(labels[order], probs[order], 100, 0)
    assert found["roc_auc_ci95"] == list(cis["roc_auc"]) and found["roc_auc_ci_unit"] == "image"
    assert found[f"sensitivity_at_specificity_{SPECIFICITY_FIXED}"]["ci95"] == list(cis["sensitivity_at_specificity"])
    assert found[f"specificity_at_sensitivity_{SENSITIVITY_FIXED}"]["ci95"] == list(cis["specificity_at_sensitivity"])
    assert found["ece"] == pytest.approx(expected_calibration_error(labels, probs))
    assert found["confusion_matrix"]["labels"] == ["NORMAL", "PNEUMONIA"]
    none = BinaryMetrics(bootstrap_resamples=0)
    none.update(paths, labels, probs)
    assert none.summary()["roc_auc_ci95"] is None and none.summary()["roc_auc_ci_unit"] is None


def test_summary_edge_cases_by_hand():
    """Sensitivity and specificity 1/2 (tp = fn, tn = fp); a certain miss clipped to 1e-7 in the loss; all films and
    all calls NORMAL: the averages still count the PNEUMONIA row (macro recall 1/2); rows of unequal lengths refused."""
    metrics = BinaryMetrics(bootstrap_resamples=0)
    metrics.update(["a", "b", "c", "d"], np.array([1, 1, 0, 0]), np.array([0.9, 0.0, 0.8, 0.1]))
    found = metrics.summary(0.5)
    assert found["sensitivity"] == 0.5 and found["specificity"] == 0.5
    by_hand = -(np.log(0.9) + np.log(1e-7) + np.log(1 - 0.8) + np.log(1 - 0.1)) / 4
    assert found["mean_loss"] == pytest.approx(by_hand)
    normal = BinaryMetrics(bootstrap_resamples=0)
    normal.update(["a", "b"], np.array([0, 0]), np.array([0.1, 0.2]))
    assert normal.summary(0.5)["macro_avg"]["recall"] == 0.5 and normal.summary(0.5)["macro_avg"]["precision"] == 0.5
    with pytest.raises(ValueError):
        BinaryMetrics().update(["a", "b"], np.array([0, 1]), np.array([0.5]))
