"""Importance scores against answers worked out by hand; empty maps carry no score."""

import numpy as np
import pytest

from pneumocam.analysis.importance import compared_scores, empty_maps, empty_summary, importance_scores


def test_uniform_map_known_answers():
    maps = np.full((1, 7, 7), 2.5, dtype=np.float32)
    s = importance_scores(maps, 70)
    assert s["mean_raw"][0] == pytest.approx(2.5)  # the mean of a constant map is the constant
    assert s["mean_maxnorm"][0] == pytest.approx(1.0)  # divided by its maximum it is all ones
    assert s["mean_minmaxnorm"][0] == 0.0  # no spread: 0 by convention
    assert s["top10_mass"][0] == pytest.approx(490 / 4900)  # the top 10% of 4,900 pixels hold 10% of the mass


def test_one_cell_peak_at_native_size_known_answers():
    maps = np.zeros((1, 10, 10), dtype=np.float32)
    maps[0, 3, 4] = 8.0  # image size 10: no upsampling, so the map is scored as it is
    s = importance_scores(maps, 10)
    assert s["mean_raw"][0] == pytest.approx(8.0 / 100)
    assert s["mean_maxnorm"][0] == pytest.approx(1 / 100)
    assert s["mean_minmaxnorm"][0] == pytest.approx(1 / 100)
    assert s["top10_mass"][0] == pytest.approx(1.0)  # all the mass sits in one of the top 10 pixels


def test_scaling_a_map_changes_only_the_raw_score():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 7, 7)).astype(np.float32)
    a, b = importance_scores(maps, 28), importance_scores(maps * 4, 28)
    assert np.allclose(b["mean_raw"], 4 * a["mean_raw"], rtol=1e-6)
    for name in ("mean_maxnorm", "mean_minmaxnorm", "top10_mass"):
        assert np.allclose(a[name], b[name], rtol=1e-5), name


def test_empty_maps_score_nan_not_zero():
    maps = np.zeros((3, 7, 7), dtype=np.float32)
    maps[1, 2, 2] = 1.0
    assert empty_maps(maps).tolist() == [True, False, True]
    s = importance_scores(maps, 7)
    for name, values in s.items():
        assert np.isnan(values[0]) and np.isnan(values[2]) and np.isfinite(values[1]), name


def test_normalised_maps_have_no_raw_score():
    maps = np.random.default_rng(1).random((2, 7, 7)).astype(np.float32)
    s = importance_scores(maps, 14, normalised=True)
    assert np.isnan(s["mean_raw"]).all() and np.isfinite(s["mean_maxnorm"]).all()


def test_a_batch_of_different_maps_in_chunks_scores_each_map_by_hand():
    """Five 3 x 3 maps at native size (no upsampling) in chunks of two (the last chunk holds one): each map's scores
    by hand, so a statistic taken over the whole batch, a chunk written to the wrong rows, or a map's minimum left in
    the min-max score shows. Nine pixels: the top 10% is round(0.9) = 1 pixel."""
    maps = np.array(
        [
            [[1, 2, 3], [4, 5, 6], [7, 8, 9]],  # min 1 > 0
            [[0, 0, 0], [0, 6, 0], [0, 0, 3]],  # sparse
            [[2, 2, 2], [2, 2, 2], [2, 2, 2]],  # constant, not empty: min-max score 0
            [[0, 0, 0], [0, 0, 0], [0, 0, 0]],  # empty: NaN everywhere
            [[-1, 4, 0], [0, 0, 0], [0, 0, 0]],  # a negative value is clipped to 0
        ],
        dtype=np.float32,
    )
    s = importance_scores(maps, 3, chunk=2)
    nan = float("nan")
    expected = {
        "mean_raw": [45 / 9, 9 / 9, 2.0, nan, 4 / 9],
        "mean_maxnorm": [(45 / 9) / 9, (9 / 9) / 6, 1.0, nan, (4 / 9) / 4],
        "mean_minmaxnorm": [(45 / 9 - 1) / (9 - 1), (9 / 9) / 6, 0.0, nan, (4 / 9) / 4],
        "top10_mass": [9 / 45, 6 / 9, 2 / 18, nan, 1.0],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(s[name], values, rtol=1e-12, err_msg=name)


def test_empty_summary_counts_empty_maps_per_class_by_hand():
    maps = np.zeros((5, 4, 4), dtype=np.float32)
    maps[1, 0, 0] = maps[3, 2, 1] = 0.5  # films 1 and 3 have a map; 0, 2 and 4 are empty
    labels = np.array([0, 1, 1, 1, 0])  # empty: NORMAL films 0 and 4, PNEUMONIA film 2
    found = empty_summary(maps, labels)
    assert (found["n"], found["by_class"]) == (3, {"NORMAL": 2, "PNEUMONIA": 1})
    assert found["note"].startswith("maps with no positive value")


def test_compared_scores_keep_the_importance_and_attention_scores_and_mask_shares_with_two_values_a_class():
    labels = np.array([0, 0, 1, 1, 1])
    nan = float("nan")
    scores = {
        "mean_raw": np.full(5, nan),  # an importance score: kept whatever its values
        "share_lungs": np.arange(5.0),  # a tested attention measure
        "share_diaphragm": np.arange(5.0),  # a region measure the run does not compare
        "lesion_mass_share": np.array([0.1, 0.2, 0.3, nan, 0.5]),  # two finite values in each class: kept
        "marker_mass_share": np.array([0.1, nan, 0.3, 0.4, 0.5]),  # one NORMAL value: left out
        "opacity_mass_share": np.array([0.1, 0.2, nan, nan, 0.5]),  # one PNEUMONIA value: left out
    }
    assert list(compared_scores(scores, labels)) == ["mean_raw", "share_lungs", "lesion_mass_share"]
