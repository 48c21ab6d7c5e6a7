"""Temperature scaling and calibration error against references written out here."""

import numpy as np
import pytest

from pneumocam.evaluation.calibration import calibrate, expected_calibration_error, fit_temperature, reliability_bins


def nll(logits, labels, t):
    from scipy.special import log_expit

    z = logits / t
    return -np.mean(labels * log_expit(z) + (1 - labels) * log_expit(-z))


def test_temperature_minimises_the_negative_log_likelihood(rng):
    labels = (rng.random(400) < 0.6).astype(int)
    logits = 6.0 * (labels - 0.5) + rng.normal(0, 3.0, 400)  # overconfident: true scale is smaller
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 20001))
    best = grid[np.argmin([nll(logits, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=1e-3) and t > 1
    assert nll(logits, labels, t) <= nll(logits, labels, 1.0)


def test_ece_by_hand():
    labels = np.array([1, 1, 0, 0, 1])
    probs = np.array([0.9, 0.6, 0.2, 0.55, 0.95])
    # confidences 0.9, 0.6, 0.8, 0.55, 0.95; correct: yes, yes, yes, no (0.55 >= 0.5 says PNEUMONIA), yes.
    # 15 bins over [0.5, 1], width 1/30: 0.55 -> bin 1, 0.6 -> bin 2 (0.6 is bin 2's upper edge), 0.8 -> bin 8,
    # 0.9 -> bin 11 (its upper edge), 0.95 -> bin 13; one image per bin, so ECE = mean |correct - confidence|.
    expected = (0.1 + 0.4 + 0.2 + 0.55 + 0.05) / 5
    assert expected_calibration_error(labels, probs) == pytest.approx(expected)
    bins = reliability_bins(labels, probs)
    assert [b["count"] for b in bins] == [0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0]


def test_calibration_lowers_the_error_of_an_overconfident_model(rng):
    labels = (rng.random(600) < 0.5).astype(int)
    logits = 8.0 * (labels - 0.5) + rng.normal(0, 4.0, 600)
    cal = calibrate(logits, labels)
    assert cal.method == "temperature" and cal.ece_after < cal.ece_before
    none = calibrate(logits, labels, "none")
    assert none.temperature == 1.0 and none.ece_after == none.ece_before == cal.ece_before


def test_a_temperature_at_its_bound_is_not_applied_and_says_why():
    """Separable validation logits: the likelihood keeps falling as T -> 0, so the fit stops at the lower bound
    (0.05: logits x 20). That is not a calibration: T stays 1 and the note says so."""
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert fit_temperature(logits, labels) == pytest.approx(0.05, rel=1e-3)
    calibration = calibrate(logits, labels)
    assert calibration.temperature == 1.0 and calibration.method == "none"
    assert "bound" in calibration.note and calibration.ece_after == calibration.ece_before
    overlapping = np.array([-2.0, 0.5, -1.0, 1.0, -0.5, 2.0])  # not separable: an interior optimum, applied
    fitted = calibrate(overlapping, labels)
    assert fitted.method == "temperature" and fitted.note is None and 0.06 < fitted.temperature < 19


def test_ece_weights_each_bin_by_its_count():
    """Three films in one confidence bin, one in another: ECE = sum over bins of count / n x |accuracy - confidence|,
    written out by hand (an unweighted mean over bins gives another number)."""
    labels = np.array([1, 1, 0, 1])
    probs = np.array([0.55, 0.55, 0.55, 0.95])  # bin of 0.55: accuracy 2/3; bin of 0.95: accuracy 1
    by_hand = 3 / 4 * abs(2 / 3 - 0.55) + 1 / 4 * abs(1 - 0.95)
    unweighted = (abs(2 / 3 - 0.55) + abs(1 - 0.95)) / 2
    assert abs(by_hand - unweighted) > 0.01  # the fixture separates the two
    assert expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(by_hand)


def test_method_none_keeps_t_1_and_reports_the_error_by_hand():
    logits, labels = np.array([2.0, -1.0, 0.5, 3.0]), np.array([1, 0, 0, 1])
    found = calibrate(logits, labels, "none")
    assert (found.method, found.temperature) == ("none", 1.0)
    # by hand: confidences max(p, 1 - p) of sigmoid(logits), all in distinct 15-bin cells over (0.5, 1]
    p = 1 / (1 + np.exp(-logits))
    confidence, correct = np.maximum(p, 1 - p), ((p >= 0.5) == labels)
    assert found.ece_before == pytest.approx(np.mean(np.abs(correct - confidence)))


def _three_in_four(temperature):
    """Logits +z (3 of 4 PNEUMONIA) and -z (1 of 4): the likelihood is highest where sigmoid(z / T) = 3/4, i.e. at
    T = z / ln 3, so z = T ln 3 gives a fit whose answer is known by formula."""
    z = temperature * np.log(3)
    return np.array([z] * 4 + [-z] * 4), np.array([1, 1, 1, 0, 0, 0, 0, 1])


@pytest.mark.parametrize("temperature", [0.075, 15.0])  # just inside each bound's margin (0.0505 and 19.8)
def test_a_temperature_near_but_inside_its_bounds_is_applied(temperature):
    logits, labels = _three_in_four(temperature)
    found = calibrate(logits, labels)  # the default method is temperature scaling
    assert found.method == "temperature" and found.temperature == pytest.approx(temperature, rel=1e-4)


def test_a_fit_that_runs_to_the_upper_bound_is_not_applied():
    """Labels independent of the logits (half positive on each side): the likelihood rises as T grows without end,
    the fit stops at 20, and T = 1 is kept with a note."""
    found = calibrate(np.array([2.0, 2.0, -2.0, -2.0]), np.array([1, 0, 1, 0]))
    assert found.method == "none" and found.temperature == 1.0 and "reached its bound" in found.note


def test_reliability_bins_edges_counts_and_empty_bins_by_hand():
    """Four bins over [0.5, 1]: confidences 0.52 (bin 0), 0.6 (bin 0), 0.9 and 0.95 (bin 3); bins 1 and 2 empty,
    with no confidence or accuracy; the ECE with these four bins by hand."""
    labels = np.array([1, 0, 1, 1])
    probs = np.array([0.52, 0.4, 0.9, 0.05])  # confidences 0.52, 0.6, 0.9, 0.95; correct: yes, yes, yes, no
    bins = reliability_bins(labels, probs, 4)
    assert [(b["low"], b["high"], b["count"]) for b in bins] == [
        (0.5, 0.625, 2),
        (0.625, 0.75, 0),
        (0.75, 0.875, 0),
        (0.875, 1.0, 2),
    ]
    assert bins[0]["confidence"] == pytest.approx(0.56) and bins[0]["accuracy"] == 1.0
    assert bins[3]["confidence"] == pytest.approx(0.925) and bins[3]["accuracy"] == 0.5
    assert bins[1]["confidence"] is None and bins[1]["accuracy"] is None
    expected = 2 / 4 * abs(1.0 - 0.56) + 2 / 4 * abs(0.5 - 0.925)
    assert expected_calibration_error(labels, probs, n_bins=4) == pytest.approx(expected)


def test_a_float32_probability_is_binned_by_its_float64_confidence():
    """0.4 in float32 is 0.40000000596...; its confidence 1 - p, taken in float64, is 0.5999999940... <= 0.6, the
    first of 5 bins' upper edge (taken in float32 it would round to 0.6000000238..., the second bin)."""
    bins = reliability_bins(np.array([0]), np.array([0.4], dtype=np.float32), 5)
    assert [b["count"] for b in bins] == [1, 0, 0, 0, 0]
