"""Every figure of stats.json against scipy.stats, to 1e-9; input validation; determinism."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import stats as st

from pneumocam.analysis.stats import (
    cohens_d,
    compare_groups,
    draw_sample,
    effect_size_label,
    format_p,
    read_scores,
    resampled_draws,
    score_report,
    summary_text,
)
from pneumocam.core.errors import StatsInputError


@pytest.fixture
def groups(rng):
    return rng.normal(0.40, 0.10, 30), rng.gamma(4.0, 0.12, 30)


def test_every_figure_matches_scipy(groups):
    normal, pneu = groups
    r = compare_groups(normal, pneu, n_permutations=2000, n_bootstrap=500, seed=3)

    def close(a, b):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)

    assert close(r["groups"]["NORMAL"]["mean"], np.mean(normal)) and close(
        r["groups"]["PNEUMONIA"]["sd"], np.std(pneu, ddof=1)
    )
    student, welch = st.ttest_ind(pneu, normal), st.ttest_ind(pneu, normal, equal_var=False)
    assert (
        close(r["student"]["t"], student.statistic)
        and close(r["student"]["p"], student.pvalue)
        and r["student"]["df"] == 58
    )
    assert (
        close(r["welch"]["t"], welch.statistic)
        and close(r["welch"]["p"], welch.pvalue)
        and close(r["welch"]["df"], welch.df)
    )
    mw = st.mannwhitneyu(pneu, normal, alternative="two-sided")
    assert close(r["mannwhitney"]["u"], mw.statistic) and close(r["mannwhitney"]["p"], mw.pvalue)
    assert close(r["shapiro"]["NORMAL"]["p"], st.shapiro(normal).pvalue) and close(
        r["levene"]["p"], st.levene(normal, pneu).pvalue
    )
    pooled = np.sqrt((29 * np.var(normal, ddof=1) + 29 * np.var(pneu, ddof=1)) / 58)
    d = (np.mean(pneu) - np.mean(normal)) / pooled
    assert close(r["cohens_d"], d) and close(r["hedges_g"], d * (1 - 3 / (4 * 60 - 9)))
    # d from t: d = t * sqrt(1/n1 + 1/n2) for Student's t.
    assert close(r["cohens_d"], student.statistic * np.sqrt(2 / 30))

    # The interval is a percentile bootstrap of Hedges' g: checked against scipy's own, from an independent stream and
    # 20000 draws, within the Monte Carlo error of the 2000 draws compare_groups makes (each end's standard error
    # estimated from the reference draws' density at that quantile; 4 of them allowed).
    def g(a, b, axis=-1):
        n_a, n_b = a.shape[axis], b.shape[axis]
        pooled = np.sqrt(((n_a - 1) * np.var(a, ddof=1, axis=axis) + (n_b - 1) * np.var(b, ddof=1, axis=axis)) / 58)
        return (np.mean(b, axis=axis) - np.mean(a, axis=axis)) / pooled * (1 - 3 / 231)

    reference = st.bootstrap(
        (normal, pneu), g, n_resamples=20000, method="percentile", rng=np.random.default_rng(2024), vectorized=True
    )
    spread = np.std(reference.bootstrap_distribution)
    tolerance = 4 * spread * np.sqrt(0.025 * 0.975 / 2000) / st.norm.pdf(1.96)
    low, high = reference.confidence_interval
    assert abs(r["hedges_g_ci"][0] - low) < tolerance and abs(r["hedges_g_ci"][1] - high) < tolerance
    assert tolerance < 0.1 * (high - low)  # narrow enough to catch a wrong statistic or a film-level mix-up
    perm = st.permutation_test(
        (pneu, normal),
        lambda a, b, axis: a.mean(axis) - b.mean(axis),
        n_resamples=2000,
        vectorized=True,
        rng=np.random.default_rng(3),
        batch=1000,
    )
    assert close(r["permutation"]["p"], perm.pvalue)
    assert r["reject_null"] == (welch.pvalue < 0.05) and r["effect_size_label"] == effect_size_label(d)
    assert set(r) >= {
        "groups",
        "student",
        "welch",
        "mannwhitney",
        "permutation",
        "cohens_d",
        "hedges_g",
        "hedges_g_ci",
        "shapiro",
        "levene",
        "alpha",
        "reject_null",
        "effect_size_label",
    }
    json.dumps(r, allow_nan=False)


def test_sign_is_pneumonia_minus_normal():
    r = compare_groups([1.0, 1.2, 0.9, 1.1], [2.0, 2.2, 1.9, 2.1], n_permutations=100, n_bootstrap=100)
    assert r["cohens_d"] > 0 and r["welch"]["t"] > 0


@pytest.mark.parametrize("d, label", [(0.1, "negligible"), (-0.3, "small"), (0.6, "medium"), (-1.2, "large")])
def test_effect_size_labels(d, label):
    assert effect_size_label(d) == label


def test_p_values_print_in_scientific_notation():
    assert format_p(3.2e-12) == "3.200e-12" and "0.0000" not in format_p(1e-30)


def test_resampled_draws_match_scipy_per_draw(rng):
    normal, pneu = rng.normal(0, 1, 80), rng.normal(0.4, 1, 200)
    r = resampled_draws(normal, pneu, n_per_class=30, n_draws=200, seed=9)
    assert len(r["p_values"]) == 200 and 0 < r["share_p_below_alpha"] < 1
    again = resampled_draws(normal, pneu, n_per_class=30, n_draws=200, seed=9)
    assert again["p_values"] == r["p_values"]
    # Rebuild draw 0 and check its p and d against scipy.
    draws = np.random.default_rng(9)
    pick_n = np.argsort(draws.random((200, 80)), axis=1)[0, :30]
    pick_p = np.argsort(draws.random((200, 200)), axis=1)[0, :30]
    assert r["p_values"][0] == pytest.approx(st.ttest_ind(pneu[pick_p], normal[pick_n]).pvalue, rel=1e-9)
    assert r["d_values"][0] == pytest.approx(cohens_d(normal[pick_n], pneu[pick_p]), rel=1e-9)


def test_same_seed_same_sample_and_statistics(groups):
    normal, pneu = np.arange(100.0), np.arange(100.0, 250.0)
    a = draw_sample(normal, pneu, 30, seed=4)
    b = draw_sample(normal, pneu, 30, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in ("NORMAL", "PNEUMONIA"))
    # The draw is numpy's choice without replacement, NORMAL first, from one generator seeded 4, in row order.
    rng = np.random.default_rng(4)
    assert a["NORMAL"].tolist() == sorted(rng.choice(100, 30, replace=False))
    assert a["PNEUMONIA"].tolist() == sorted(rng.choice(150, 30, replace=False))
    assert draw_sample(normal, pneu, 30, seed=5)["NORMAL"].tolist() != a["NORMAL"].tolist()
    first = score_report(normal, pneu, 30, n_draws=20, seed=1)
    assert first == score_report(normal, pneu, 30, n_draws=20, seed=1)
    assert first["sample"]["groups"]["NORMAL"]["mean"] == pytest.approx(
        np.mean(normal[draw_sample(normal, pneu, 30, 1)["NORMAL"]])
    )


def write(tmp_path, text):
    path = tmp_path / "scores.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("label,other\nNORMAL,1\n", "lacks column"),
        ("label,score\nCOVID,1\n", "label 'COVID'"),
        ("label,score\nNORMAL,abc\nNORMAL,1\nPNEUMONIA,2\nPNEUMONIA,3\n", "'abc' is not a number"),
        ("label,score\nNORMAL,nan\nNORMAL,1\nPNEUMONIA,2\nPNEUMONIA,3\n", "NORMAL group has 1 value"),  # NaN dropped
        ("label,score\nNORMAL,inf\nNORMAL,1\nPNEUMONIA,2\nPNEUMONIA,3\n", "infinite"),
        ("label,score\nNORMAL,1\nPNEUMONIA,2\nPNEUMONIA,3\n", "NORMAL group has 1 value"),
        ("label,score\nPNEUMONIA,2\nPNEUMONIA,3\n", "NORMAL group has 0 value"),
        ("path,label,score\na,NORMAL,1\na,NORMAL,1\nb,NORMAL,2\nc,PNEUMONIA,3\nd,PNEUMONIA,4\n", "twice"),
        ("", "no data rows"),
    ],
)
def test_bad_scores_tables_are_clear_errors(tmp_path, text, message):
    with pytest.raises(StatsInputError, match=message):
        read_scores(write(tmp_path, text), ["score"])


def test_fuzzed_scores_tables_never_crash_and_valid_ones_reach_the_statistics(tmp_path_factory):
    """Tables of valid rows, and of valid rows mixed with junk (labels, NaN, infinities, text): none crashes, and the
    count of examples that got past read_scores into the statistics is checked (before, none of 180 did)."""
    from hypothesis import HealthCheck

    reached, refused = [], []
    valid = hs.tuples(hs.sampled_from(["NORMAL", "PNEUMONIA", "normal", "0", "1"]), hs.floats(-1e6, 1e6))
    junk = hs.tuples(
        hs.sampled_from(["NORMAL", "PNEUMONIA", "x", ""]),
        hs.one_of(hs.floats(allow_nan=True, allow_infinity=True), hs.text(max_size=4)),
    )
    tables = hs.one_of(hs.lists(valid, min_size=6, max_size=14), hs.lists(hs.one_of(valid, junk), max_size=12))

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(tables)
    def check(rows):
        path = tmp_path_factory.mktemp("fuzz") / "s.csv"
        path.write_text(
            "label,score\n" + "".join(f"{l},{str(v).replace(',', ';').replace(chr(10), ' ')}\n" for l, v in rows)
        )
        try:
            groups = read_scores(path, ["score"])
        except StatsInputError:
            refused.append(1)
            return
        normal, pneu, _ = groups["score"]
        result = compare_groups(normal, pneu, n_permutations=50, n_bootstrap=50)
        assert result["groups"]["NORMAL"]["n"] == len(normal)
        summary_text({"sample": result}, "score")
        reached.append(1)

    check()
    assert len(reached) >= 20 and len(refused) >= 10, (len(reached), len(refused))


def test_summary_has_the_original_sections(groups):
    text = summary_text({"sample": compare_groups(*groups, n_permutations=200, n_bootstrap=200)}, "mean_raw")
    for heading in ("Summary Statistics", "Statistical Test Results", "Effect Size", "Cohen's d", "Welch"):
        assert heading in text
    assert "0.0000" not in text


def test_permutation_p_on_small_groups_equals_exact_enumeration():
    from itertools import combinations

    normal, pneumonia = np.array([0.31, 0.42, 0.27, 0.38]), np.array([0.45, 0.52, 0.36, 0.61])
    pooled = np.concatenate([pneumonia, normal])
    observed = pneumonia.mean() - normal.mean()
    null = []
    for chosen in combinations(range(8), 4):  # all 70 ways to relabel 4 of the 8 values as PNEUMONIA
        mask = np.zeros(8, dtype=bool)
        mask[list(chosen)] = True
        null.append(pooled[mask].mean() - pooled[~mask].mean())
    null = np.array(null)
    eps = 1e-12
    expected = min(1.0, 2 * min(np.mean(null <= observed + eps), np.mean(null >= observed - eps)))
    assert len(null) == 70
    r = compare_groups(normal, pneumonia, n_permutations=9999, n_bootstrap=100)
    assert r["permutation"]["p"] == pytest.approx(expected, abs=1e-12)
    # what was done is reported: all 70 relabellings, not "9999 resamples"
    assert (r["permutation"]["exact"], r["permutation"]["n_resamples"]) == (True, len(null))
    drawn = compare_groups(normal, pneumonia, n_permutations=50, n_bootstrap=100)["permutation"]
    assert (drawn["exact"], drawn["n_resamples"], drawn["n_distinct_relabellings"]) == (False, 50, 70)


def test_resampled_draws_count_the_draws_without_a_p():
    """Hand-built groups: NORMAL holds six 1.0 and one 5.0, PNEUMONIA is constant 1.0 (a max-normalised score does
    this). A 3-vs-3 draw has no t-test p (0/0) when its NORMAL part misses the 5.0, i.e. when it avoids row 6."""
    normal = np.array([1.0] * 6 + [5.0])
    pneumonia = np.full(8, 1.0)
    r = resampled_draws(normal, pneumonia, n_per_class=3, n_draws=400, seed=2)
    draws = np.random.default_rng(2)
    pick_n = np.argsort(draws.random((400, 7)), axis=1)[:, :3]
    without = int((~(pick_n == 6).any(axis=1)).sum())
    assert r["n_draws_without_p"] == without and 0 < without < 400
    p = np.array(r["p_values"])
    assert np.isnan(p).sum() == without
    assert r["share_p_below_alpha"] == pytest.approx(np.mean(p[np.isfinite(p)] < 0.05))


def test_reject_null_follows_welch_where_student_disagrees():
    """Unequal sizes and spreads: Student's p is below 0.05 and Welch's above it (scipy says so here), and the
    verdict is Welch's (documented: reject_null is Welch p < alpha)."""
    normal = [0.03, -0.03, 0.13, 0.02, -0.11, 0.07, 0.26, 0.19, -0.14, -0.25, -0.12, 0.01, -0.47, -0.04, -0.25,
              -0.15, -0.11, -0.06, 0.08, 0.21, -0.03, 0.27, -0.13, 0.07, 0.18, 0.02, -0.15, -0.18, -0.09,
              0.04]  # fmt: skip
    pneumonia = [-1.52, 0.08, 0.18, 1.58, 0.93, 1.21]
    student = st.ttest_ind(pneumonia, normal, equal_var=True).pvalue
    welch = st.ttest_ind(pneumonia, normal, equal_var=False).pvalue
    assert student < 0.05 < welch  # the fixture separates the two
    result = compare_groups(normal, pneumonia, alpha=0.05, n_permutations=99, n_bootstrap=50)
    assert result["reject_null"] is False and result["welch"]["p"] == pytest.approx(welch)


def test_the_vectorised_hedges_g_is_hedges_g_row_by_row_zero_spread_included():
    from pneumocam.analysis.stats import hedges_g, hedges_g_along

    normal = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 1.0, 0.0]])
    pneumonia = np.array([[2.0, 5.0, 6.0, 7.0], [3.0, 3.0, 3.0, 3.0], [4.0, 4.0, 4.0, 4.0], [1.0, 1.0, 2.0, 0.0]])
    # rows 2 and 3 by hand: no spread and no difference gives 0; no spread and a difference of +2 gives +inf
    found = hedges_g_along(normal, pneumonia)
    assert found[1] == 0.0 and found[2] == np.inf
    np.testing.assert_allclose(found, [hedges_g(a, b) for a, b in zip(normal, pneumonia)], rtol=1e-12)


def test_group_statistics_leaves_nan_rows_out_per_class_and_tests_the_rest_as_scipy():
    """stats.json's entry per score: NaN rows counted per class and left out, the finite values of each class tested
    (scipy's Welch and Student p, each class's mean by hand), a sample larger than a class shrunk with a note, and a
    score with too few finite values in a class reported as an error."""
    from pneumocam.analysis.stats import group_statistics

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    share = np.array([0.1, np.nan, 0.3, 0.2, 0.9, np.nan, 0.7, np.nan, 0.8])
    empty = np.array([np.nan, np.nan, np.nan, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5])  # one finite NORMAL value
    found, notes = group_statistics(
        {"share": share, "empty": empty}, labels, 5, 0, 0.05, 0, descriptions={"share": "lung share"}
    )
    entry = found["share"]
    assert entry["description"] == "lung share" and found["empty"]["description"] == "empty"
    assert entry["dropped_nan_rows"] == {"NORMAL": 1, "PNEUMONIA": 2}
    normal, pneumonia = [0.1, 0.3, 0.2], [0.9, 0.7, 0.8]
    sample = entry["sample"]
    assert sample["groups"]["NORMAL"]["n"] == 3 and sample["groups"]["PNEUMONIA"]["n"] == 3  # shrunk from 5
    assert sample["groups"]["NORMAL"]["mean"] == pytest.approx(0.2)
    assert sample["groups"]["PNEUMONIA"]["mean"] == pytest.approx(0.8)
    assert sample["welch"]["p"] == pytest.approx(st.ttest_ind(pneumonia, normal, equal_var=False).pvalue)
    assert sample["student"]["p"] == pytest.approx(st.ttest_ind(pneumonia, normal).pvalue)
    assert "only 3 values" in notes["n_per_class"]
    assert "error" in found["empty"] and found["empty"]["dropped_nan_rows"] == {"NORMAL": 3, "PNEUMONIA": 0}
    _, no_notes = group_statistics({"share": share}, labels, 3, 0, 0.05, 0)
    assert no_notes == {}  # 3 per class fit: no note


QUANTILES = ("0.05", "0.25", "0.5", "0.75", "0.95")


def test_resampled_draws_that_take_every_value_equal_scipy_on_the_whole_groups():
    """With n per class equal to each group's size every draw holds the whole groups (in some order): every p is
    scipy's Student p on them and every d Cohen's d by hand, so each quantile equals them; the record's layout is
    what stats.json readers expect."""
    from pneumocam.analysis.stats import resampled_draws

    normal, pneumonia = np.array([0.1, 0.4, 0.35, 0.2]), np.array([0.6, 0.9, 0.55, 0.7])
    p = st.ttest_ind(pneumonia, normal).pvalue
    pooled = np.sqrt((3 * normal.var(ddof=1) + 3 * pneumonia.var(ddof=1)) / 6)
    d = (pneumonia.mean() - normal.mean()) / pooled
    found = resampled_draws(normal, pneumonia, 4, 5, 0.01, 3)
    assert set(found) == {
        "n_per_class", "n_draws", "seed", "alpha", "test", "n_draws_without_p", "share_p_below_alpha", "p_quantiles",
        "d_quantiles", "p_values", "d_values",
    }  # fmt: skip
    assert (found["n_per_class"], found["n_draws"], found["seed"], found["alpha"]) == (4, 5, 3, 0.01)
    assert found["test"] == "student" and found["n_draws_without_p"] == 0
    np.testing.assert_allclose(found["p_values"], [p] * 5, rtol=1e-9)
    np.testing.assert_allclose(found["d_values"], [d] * 5, rtol=1e-9)
    assert found["p_quantiles"] == {q: pytest.approx(p, rel=1e-9) for q in QUANTILES}
    assert found["d_quantiles"] == {q: pytest.approx(d, rel=1e-9) for q in QUANTILES}
    assert found["share_p_below_alpha"] == float(p < 0.01) == 1.0
    assert resampled_draws(normal, pneumonia, 4, 5, p / 2, 3)["share_p_below_alpha"] == 0.0
    with pytest.raises(StatsInputError, match="the PNEUMONIA group has 4 values, fewer than the 5 drawn"):
        resampled_draws(np.arange(6.0), pneumonia, 5, 5, 0.05, 0)


def test_resampled_draws_with_constant_groups_have_no_p_and_a_zero_d():
    """Both groups the same constant: no t-test p in any draw (counted, quantiles NaN) and d = 0 (no spread), not NaN
    or inf; a small but non-zero spread keeps its d (the zero-spread guard must not swallow it)."""
    from pneumocam.analysis.stats import resampled_draws

    found = resampled_draws(np.full(5, 0.5), np.full(5, 0.5), 3, 4, 0.05, 0)
    assert found["n_draws_without_p"] == 4 and np.isnan(found["share_p_below_alpha"])
    assert all(np.isnan(v) for v in found["p_quantiles"].values())
    assert found["d_values"] == [0.0] * 4
    small = resampled_draws(np.array([0.20, 0.21]), np.array([0.30, 0.31]), 2, 3, 0.05, 0)
    assert small["d_values"] == pytest.approx([0.1 / np.sqrt(0.00005)] * 3)  # pooled SD 0.00707..., d about 14.1


def test_draw_sample_names_each_class_and_draws_without_replacement():
    from pneumocam.analysis.stats import draw_sample

    everything = draw_sample(np.zeros(3), np.zeros(5), None, 0)
    assert set(everything) == {"NORMAL", "PNEUMONIA"}
    assert everything["NORMAL"].tolist() == [0, 1, 2] and everything["PNEUMONIA"].tolist() == [0, 1, 2, 3, 4]
    drawn = draw_sample(np.zeros(6), np.zeros(8), 6, 1)
    assert drawn["NORMAL"].tolist() == list(range(6))  # all six, each once
    assert len(set(drawn["PNEUMONIA"].tolist())) == 6 and drawn["PNEUMONIA"].tolist() == sorted(drawn["PNEUMONIA"])
    with pytest.raises(StatsInputError, match="the NORMAL group has 3 values, fewer than --n-per-class 4"):
        draw_sample(np.zeros(3), np.zeros(8), 4, 0)


def test_score_report_layout_and_which_alpha_and_seed_reach_each_test():
    """The sample and all_images entries use the given alpha (a p between two alphas flips reject_null), the draw
    records n, seed and the indices, and "resampled" appears only when both classes hold more than n."""
    from pneumocam.analysis.stats import draw_sample, score_report

    rng = np.random.default_rng(4)
    normal, pneumonia = rng.normal(0, 1, 12), rng.normal(0.9, 1, 12)
    welch = st.ttest_ind(pneumonia[draw_sample(normal, pneumonia, 8, 2)["PNEUMONIA"]],
                         normal[draw_sample(normal, pneumonia, 8, 2)["NORMAL"]], equal_var=False).pvalue  # fmt: skip
    whole = st.ttest_ind(pneumonia, normal, equal_var=False).pvalue
    for alpha in (welch * 0.9, welch * 1.1):
        found = score_report(normal, pneumonia, 8, 3, alpha, 2)
        assert found["sample"]["reject_null"] == (welch < alpha)
        assert found["sample"]["welch"]["p"] == pytest.approx(welch)
        assert found["all_images"]["welch"]["p"] == pytest.approx(whole)
        assert found["resampled"]["alpha"] == alpha and found["resampled"]["seed"] == 2
    assert found["sample"]["draw"] == {
        "n_per_class": 8,
        "seed": 2,
        "indices": {k: v.tolist() for k, v in draw_sample(normal, pneumonia, 8, 2).items()},
    }
    assert found["resampled"]["n_draws"] == 3 and found["resampled"]["n_per_class"] == 8
    assert "resampled" not in score_report(normal, pneumonia, 12, 3, 0.05, 2)  # n equals the groups: nothing to draw
    assert "resampled" not in score_report(normal, pneumonia, 8, 0, 0.05, 2)  # no draws asked for
    assert set(score_report(normal, pneumonia, None, 3, 0.05, 2)) == {"sample", "all_images"}


def test_a_short_class_is_named_in_each_draw_error():
    from pneumocam.analysis.stats import draw_sample, resampled_draws

    with pytest.raises(StatsInputError, match="the PNEUMONIA group has 3 values, fewer than --n-per-class 4"):
        draw_sample(np.zeros(8), np.zeros(3), 4, 0)
    with pytest.raises(StatsInputError, match="the NORMAL group has 3 values, fewer than the 4 drawn"):
        resampled_draws(np.arange(3.0), np.arange(6.0), 4, 5, 0.05, 0)


def test_score_report_hands_its_alpha_and_seed_to_every_test_and_keeps_a_single_draw():
    """alpha 0.2 and seed 7 (not the defaults) reach the all-images tests and the sample's; the seed changes the
    bootstrap interval (checked), so a test run with the default seed would differ; one resampled draw is kept."""
    from pneumocam.analysis.stats import compare_groups, score_report

    rng = np.random.default_rng(8)
    normal, pneumonia = rng.normal(0, 1, 12), rng.normal(0.5, 1, 12)
    found = score_report(normal, pneumonia, 8, 1, 0.2, 7)
    assert found["all_images"]["alpha"] == 0.2 and found["sample"]["alpha"] == 0.2
    assert found["all_images"] == compare_groups(normal, pneumonia, alpha=0.2, seed=7)
    assert found["all_images"] != compare_groups(normal, pneumonia, alpha=0.2, seed=0)  # the seed matters here
    drawn = found["sample"].pop("draw")["indices"]
    assert found["sample"] == compare_groups(normal[drawn["NORMAL"]], pneumonia[drawn["PNEUMONIA"]], alpha=0.2, seed=7)
    assert found["resampled"]["n_draws"] == 1 and len(found["resampled"]["p_values"]) == 1


def test_group_statistics_shrinks_a_sample_to_a_class_of_two_and_passes_its_seed_on():
    """A class of exactly 2 finite values (the least a test needs) with 4 asked per class: the sample takes 2 per
    class and says so, drawn with the seed given (7); a class of 1 value is an error that names it."""
    from pneumocam.analysis.stats import group_statistics

    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    values = np.array([0.1, 0.3, 0.6, 0.9, 0.7, 0.8, 0.5])
    found, notes = group_statistics({"s": values}, labels, 4, 0, 0.05, 7)
    assert "error" not in found["s"] and "only 2 values" in notes["n_per_class"]
    assert found["s"]["sample"]["draw"]["n_per_class"] == 2 and found["s"]["sample"]["draw"]["seed"] == 7
    assert found["s"]["sample"]["groups"]["PNEUMONIA"]["n"] == 2
    big, _ = group_statistics({"s": np.arange(20.0)}, np.repeat([0, 1], 10), 4, 0, 0.05, 7)
    assert big["s"]["sample"]["draw"] == {**big["s"]["sample"]["draw"], "n_per_class": 4, "seed": 7}
    one, _ = group_statistics({"s": values}, np.array([0, 1, 1, 1, 1, 1, 1]), 4, 0, 0.05, 7)
    assert one["s"]["error"] == "the NORMAL group has 1 value(s); each group needs at least 2"


@pytest.mark.parametrize("d, label", [(0.2, "small"), (-0.5, "medium"), (0.8, "large")])
def test_effect_size_labels_at_cohens_boundaries(d, label):
    """Cohen's thresholds are lower bounds: a d of exactly 0.2, 0.5 or 0.8 is small, medium, large."""
    assert effect_size_label(d) == label


def test_compare_groups_defaults_and_alpha_bounds():
    """Defaults written here: 9,999 random relabellings (12 + 12 films have 2,704,156 > 9,999 distinct ones) and
    2,000 bootstrap resamples; alpha must lie strictly between 0 and 1."""
    from pneumocam.analysis.stats import compare_groups

    rng = np.random.default_rng(9)
    normal, pneumonia = rng.normal(0, 1, 12), rng.normal(1, 1, 12)
    found = compare_groups(normal, pneumonia)
    assert found["permutation"]["n_resamples"] == 9999 and not found["permutation"]["exact"]
    assert found["hedges_g_ci_resamples"] == 2000
    for alpha in (0.0, 1.0):
        with pytest.raises(StatsInputError, match=f"alpha must be between 0 and 1, got {alpha}"):
            compare_groups(normal, pneumonia, alpha=alpha)


def test_a_bootstrap_of_one_resample_is_a_percentile_interval_of_one_value():
    """One percentile resample: both ends of Hedges' g interval are that resample's g (a BCa interval, or the default
    9,999 resamples, would not close)."""
    from pneumocam.analysis.stats import compare_groups

    rng = np.random.default_rng(10)
    found = compare_groups(rng.normal(0, 1, 8), rng.normal(1, 1, 8), n_bootstrap=1)
    low, high = found["hedges_g_ci"]
    assert np.isfinite(low) and low == high


def test_constant_groups_one_or_both_by_hand():
    """One constant group: Levene's p and the g interval exist (scipy's Levene here). Both constant: no Levene p,
    no interval ([NaN, NaN]), no Shapiro p. Three distinct values: Shapiro's p is scipy's; two values: none."""
    from pneumocam.analysis.stats import compare_groups

    varying, flat = np.array([0.1, 0.4, 0.3]), np.array([0.5, 0.5, 0.5])
    for normal, pneumonia in ((varying, flat), (flat, varying)):
        one = compare_groups(normal, pneumonia, n_permutations=99, n_bootstrap=50)
        assert one["levene"]["p"] == pytest.approx(st.levene(normal, pneumonia).pvalue)
        assert not np.isnan(one["hedges_g_ci"]).any()  # computed (an end may be infinite: zero-spread resamples)
    assert compare_groups(varying, flat, n_bootstrap=50)["shapiro"]["NORMAL"]["p"] == pytest.approx(
        st.shapiro(varying).pvalue
    )
    both = compare_groups(flat, flat + 0.1, n_permutations=99, n_bootstrap=50)
    assert np.isnan(both["levene"]["p"]) and isinstance(both["hedges_g_ci"], list)
    assert all(np.isnan(both["hedges_g_ci"])) and np.isnan(both["shapiro"]["NORMAL"]["p"])
    two = compare_groups(np.array([0.1, 0.2]), np.array([0.3, 0.5]), n_permutations=99, n_bootstrap=50)
    assert np.isnan(two["shapiro"]["NORMAL"]["p"])


def test_a_permutation_test_is_exact_when_its_budget_equals_the_relabellings():
    """3 + 3 films have C(6, 3) = 20 distinct relabellings: a budget of exactly 20 enumerates them all."""
    from pneumocam.analysis.stats import compare_groups

    found = compare_groups(np.array([0.1, 0.2, 0.3]), np.array([0.6, 0.7, 0.9]), n_permutations=20, n_bootstrap=50)
    assert found["permutation"]["exact"] and found["permutation"]["n_resamples"] == 20


def test_validate_groups_messages_name_the_group_and_the_count():
    from pneumocam.analysis.stats import LARGEST_SCORE, validate_groups

    with pytest.raises(StatsInputError, match="the PNEUMONIA scores are not numbers"):
        validate_groups([0.1, 0.2], ["a", "b"])
    with pytest.raises(StatsInputError, match="the PNEUMONIA group holds 2 NaN or infinite values"):
        validate_groups([0.1, 0.2], [0.1, np.nan, np.inf])
    with pytest.raises(StatsInputError, match="its square overflows float64; rescale it below 1e150"):
        validate_groups([0.1, 2e150], [0.1, 0.2])
    normal, _ = validate_groups([0.1, LARGEST_SCORE], [0.1, 0.2])  # the bound itself is accepted
    assert normal.dtype == np.float64 and normal[1] == 1e150


def test_numbers_and_p_values_print_by_hand():
    from pneumocam.analysis.stats import format_number, format_p, permutation_text

    assert format_number(1.2345) == "1.23" and format_number(float("inf")) == "inf"
    assert format_number(0.5, ".1%") == "50.0%"
    assert format_number(None) == "n/a" and format_number(float("nan")) == "n/a"
    assert format_p(0.0123) == "1.230e-02" and format_p(None) == "n/a" and format_p(float("nan")) == "n/a"
    assert permutation_text({"n_resamples": 20, "exact": True}) == "exact: all 20 relabellings"
    assert permutation_text({"n_resamples": 9999, "exact": False}) == "9999 random relabellings"


def hand_entry(reject: bool, exact: bool, resampled: dict | None) -> dict:
    """A stats.json entry with a distinct value in every field, so a field read from the wrong key shows."""
    sample = {
        "difference": "PNEUMONIA - NORMAL",
        "groups": {
            "NORMAL": {"n": 30, "mean": 0.4123456789, "sd": 0.101},
            "PNEUMONIA": {"n": 31, "mean": 0.5, "sd": 0.12345678},
        },
        "student": {"t": 2.345678, "df": 59.0, "p": 0.0223},
        "welch": {"t": 2.3, "df": 57.26, "p": 0.025},
        "mannwhitney": {"u": 612.0, "p": 0.031},
        "permutation": {"p": 0.0001, "exact": exact, "n_resamples": 70 if exact else 9999},
        "shapiro": {"NORMAL": {"p": 0.5}, "PNEUMONIA": {"p": 0.0012}},
        "levene": {"p": 0.4},
        "alpha": 0.05,
        "reject_null": reject,
        "cohens_d": 0.6012345,
        "effect_size_label": "medium",
        "hedges_g": 0.5934,
        "hedges_g_ci": [0.08, 1.1],
    }
    return {"sample": sample} | ({"resampled": resampled} if resampled is not None else {})


RESAMPLED = {
    "n_draws": 1000,
    "n_per_class": 30,
    "share_p_below_alpha": 0.4567,
    "alpha": 0.01,
    "p_quantiles": {"0.5": 0.0612},
    "d_quantiles": {"0.5": 0.4821},
}


def test_summary_text_is_the_original_layout_character_for_character():
    """Every line written out by hand from the entry above: column widths (12, 6, 14, 14), each statistic's format
    (t to 4 places, Student's df whole, Welch's to 1, p in scientific notation), the verdict, the permutation kind
    and the resampled spread."""
    expected = [
        "Summary Statistics (mean_raw; difference = PNEUMONIA - NORMAL)",
        "Class            n          Mean            SD",
        "NORMAL          30      0.412346         0.101",
        "PNEUMONIA       31           0.5      0.123457",
        "",
        "Statistical Test Results",
        "  Student's t-test (original): t = 2.3457, df = 59, p = 2.230e-02",
        "  Welch's t-test:              t = 2.3000, df = 57.3, p = 2.500e-02",
        "  Mann-Whitney U:              U = 612.0, p = 3.100e-02",
        "  Permutation test:            p = 1.000e-04 (9999 random relabellings)",
        "  Shapiro-Wilk p: NORMAL 5.000e-01, PNEUMONIA 1.200e-03; Levene p = 4.000e-01",
        "  At alpha = 0.05: reject the null hypothesis (Welch)",
        "",
        "Effect Size",
        "  Cohen's d = 0.6012 (medium); Hedges' g = 0.5934, 95% CI [0.0800, 1.1000]",
        "  Over 1000 random 30 vs 30 draws (3 without a p: both groups constant): 45.7% have p < 0.01; "
        "median p 6.120e-02, median d 0.482",
    ]
    entry = hand_entry(reject=True, exact=False, resampled=RESAMPLED | {"n_draws_without_p": 3})
    assert summary_text(entry, "mean_raw").split("\n") == expected


@pytest.mark.parametrize("without_p", [{"n_draws_without_p": 0}, {}], ids=["none-without-p", "older-entry"])
def test_summary_text_says_do_not_reject_exact_and_leaves_out_draws_without_a_p_when_none(without_p):
    text = summary_text(hand_entry(reject=False, exact=True, resampled=RESAMPLED | without_p), "s").split("\n")
    assert text[9] == "  Permutation test:            p = 1.000e-04 (exact: all 70 relabellings)"
    assert text[11] == "  At alpha = 0.05: do not reject the null hypothesis (Welch)"
    assert text[-1] == "  Over 1000 random 30 vs 30 draws: 45.7% have p < 0.01; median p 6.120e-02, median d 0.482"
    assert len(summary_text(hand_entry(reject=False, exact=True, resampled=None), "s").split("\n")) == len(text) - 1


def test_summary_text_writes_an_infinite_statistic_as_inf():
    """Two constant groups with different means: Student's t is infinite (scipy: t = diff / 0). Every formatted
    statistic of an infinite value reads 'inf', lower case like numpy and scipy print it."""
    entry = hand_entry(reject=True, exact=False, resampled=None)
    sample = entry["sample"]
    for test in ("student", "welch"):
        sample[test] |= {"t": float("inf"), "df": float("inf")}
    sample |= {"cohens_d": float("inf"), "hedges_g": float("inf"), "hedges_g_ci": [float("inf"), float("inf")]}
    text = summary_text(entry, "s").split("\n")
    assert text[6] == "  Student's t-test (original): t = inf, df = inf, p = 2.230e-02"
    assert text[7] == "  Welch's t-test:              t = inf, df = inf, p = 2.500e-02"
    assert text[14] == "  Cohen's d = inf (medium); Hedges' g = inf, 95% CI [inf, inf]"


def test_read_scores_returns_each_class_in_file_order_and_counts_the_dropped_rows(tmp_path):
    """A hand-made table: NORMAL 0.1, 0.3 (one empty, one NaN dropped), PNEUMONIA 0.7, 0.2, 0.9 (one NaN dropped);
    labels as 0/1 and in any case; written with Windows line ends and the byte-order mark Excel's 'CSV UTF-8' puts
    first (before `label`, which must still be found); a score column beside another."""
    text = (
        "\ufefflabel,path,score,other\r\n"
        "NORMAL,a.png,0.1,5\r\n"
        "pneumonia,b.png,0.7,5\r\n"
        "0,c.png,,5\r\n"
        "1,d.png,0.2,5\r\n"
        "Normal,e.png,nan,5\r\n"
        "PNEUMONIA,f.png,NaN,5\r\n"
        "NORMAL,g.png,0.3,5\r\n"
        "PNEUMONIA,h.png,0.9,5\r\n"
    )
    path = tmp_path / "scores.csv"
    path.write_bytes(text.encode("utf-8"))
    found = read_scores(path, ["score"])
    assert list(found) == ["score"]
    normal, pneumonia, dropped = found["score"]
    assert normal.tolist() == [0.1, 0.3] and pneumonia.tolist() == [0.7, 0.2, 0.9]
    assert dropped == {"NORMAL": 2, "PNEUMONIA": 1}


def test_read_scores_keeps_paths_that_differ_only_by_a_line_break_apart(tmp_path):
    """Quoted cells are read as written (csv needs newline=''): a path holding a carriage return and one holding a
    line feed are two films, not a duplicate."""
    path = tmp_path / "scores.csv"
    path.write_bytes(b'path,label,score\n"a\rb",NORMAL,1\n"a\nb",NORMAL,2\nc,PNEUMONIA,3\nd,PNEUMONIA,4\n')
    assert read_scores(path, ["score"])["score"].normal.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,other\na,1\n", r"scores.csv lacks column\(s\) label, score; it has: path, other$"),
        ("label,score\nNORMAL,1\nCOVID,1\n", r"scores.csv, line 3: label 'COVID' is not NORMAL or PNEUMONIA$"),
        (
            "label,score\nNORMAL,1\nNORMAL,2\nPNEUMONIA,inf\nPNEUMONIA,3\nPNEUMONIA,-inf\n",
            r"scores.csv: score is infinite on 2 row\(s\), first on line 4; ",
        ),
        ("label,score\nNORMAL,1\nNORMAL,x\n", r"scores.csv, line 3: score = 'x' is not a number$"),
        (
            "path,label,score\na,NORMAL,1\nb,NORMAL,1\na,NORMAL,2\nb,PNEUMONIA,3\na,PNEUMONIA,4\n",
            r"scores.csv lists 3 path\(s\) twice \(e.g. a\)",
        ),
    ],
    ids=["columns", "label-line", "infinite-line", "number-line", "duplicates"],
)
def test_read_scores_messages_name_the_line_and_the_columns(tmp_path, text, message):
    """Hand counts: line 1 is the header, so the n-th data row is line n + 1; a path seen before counts once per
    repeat (a twice and b once: 3)."""
    with pytest.raises(StatsInputError, match=message):
        read_scores(write(tmp_path, text), ["score"])


def test_an_unreadable_scores_file_says_so(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_bytes(b"label,score\n\xff\xfe\xfa,1\n")
    with pytest.raises(StatsInputError, match=r"cannot read .*scores.csv: 'utf-8' codec can't decode"):
        read_scores(path, ["score"])
