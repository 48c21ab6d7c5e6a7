"""Importance scores against answers worked out by hand; empty maps carry no score."""

import numpy as np
import pytest

from pneumocam.analysis.importance import empty_maps, importance_scores


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
