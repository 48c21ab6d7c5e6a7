"""Two-group statistics for per-image scores, signed PNEUMONIA minus NORMAL. Pure functions over arrays.

Reproduces the original test (Student's t, Cohen's d on 30 vs 30 random images) and adds what it lacked: Welch's t,
Mann-Whitney U, a permutation test, Hedges' g with a bootstrap CI, normality and equal-variance checks, and the
distribution of p and d over many resampled 30 vs 30 draws, since a single draw can flip the conclusion.
"""

from __future__ import annotations

import csv
import math
from typing import NamedTuple

import numpy as np
from scipy import stats as st

from pneumocam.core.defaults import ALPHA, N_DRAWS, N_PER_CLASS, SEED
from pneumocam.core.errors import StatsInputError


def cohens_d_along(normal: np.ndarray, pneumonia: np.ndarray, axis: int = -1) -> np.ndarray:
    """(mean P - mean N) / pooled SD with ddof=1 variances, for samples along `axis` (scipy.stats.bootstrap's
    vectorised form: many resamples at once); zero spread gives 0 without a difference, else an infinite d."""
    n1, n2 = normal.shape[axis], pneumonia.shape[axis]
    pooled = np.sqrt(
        ((n1 - 1) * np.var(normal, ddof=1, axis=axis) + (n2 - 1) * np.var(pneumonia, ddof=1, axis=axis)) / (n1 + n2 - 2)
    )
    diff = np.mean(pneumonia, axis=axis) - np.mean(normal, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pooled == 0, np.where(diff == 0, 0.0, np.copysign(np.inf, diff)), diff / pooled)


def cohens_d(normal: np.ndarray, pneumonia: np.ndarray) -> float:
    return float(cohens_d_along(np.asarray(normal, dtype=np.float64), np.asarray(pneumonia, dtype=np.float64)))


def mean_difference(pneumonia: np.ndarray, normal: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(pneumonia, axis=axis) - np.mean(normal, axis=axis)


def hedges_correction(n1: int, n2: int) -> float:
    """Small-sample correction J = 1 - 3 / (4 (n1 + n2) - 9)."""
    return 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)


def hedges_g_along(normal: np.ndarray, pneumonia: np.ndarray, axis: int = -1) -> np.ndarray:
    return cohens_d_along(normal, pneumonia, axis) * hedges_correction(normal.shape[axis], pneumonia.shape[axis])


def hedges_g(normal: np.ndarray, pneumonia: np.ndarray) -> float:
    return float(hedges_g_along(np.asarray(normal, dtype=np.float64), np.asarray(pneumonia, dtype=np.float64)))


def effect_size_label(d: float) -> str:
    """Cohen's conventions on |d|: < 0.2 negligible, < 0.5 small, < 0.8 medium, else large."""
    size = abs(d)
    return "negligible" if size < 0.2 else "small" if size < 0.5 else "medium" if size < 0.8 else "large"


LARGEST_SCORE = 1e150  # |x| above this: sums of squares (variances) overflow float64's 1.8e308


def validate_groups(normal, pneumonia) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        try:
            array = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise StatsInputError(f"the {name} scores are not numbers: {exc}") from exc
        if len(array) < 2:
            raise StatsInputError(f"the {name} group has {len(array)} value(s); each group needs at least 2")
        if not np.all(np.isfinite(array)):
            raise StatsInputError(f"the {name} group holds {int(np.sum(~np.isfinite(array)))} NaN or infinite values")
        arrays.append(array)
    if (largest := max(float(np.abs(a).max()) for a in arrays)) > LARGEST_SCORE:
        raise StatsInputError(
            f"a score as large as {largest:.3g}: its square overflows float64; rescale it below 1e150"
        )
    return arrays[0], arrays[1]


def permutation_record(result, n_normal: int, n_pneumonia: int, n_permutations: int) -> dict:
    """What the permutation test did: scipy enumerates every distinct relabelling when there are no more of them
    than n_permutations (exact), and draws n_permutations at random otherwise."""
    relabellings = math.comb(n_normal + n_pneumonia, n_normal)
    exact = relabellings <= n_permutations
    return {
        "p": float(result.pvalue),
        "exact": exact,
        "n_resamples": relabellings if exact else int(n_permutations),
        "n_distinct_relabellings": relabellings,
    }


def permutation_text(record: dict) -> str:
    n = record["n_resamples"]
    return f"exact: all {n} relabellings" if record.get("exact") else f"{n} random relabellings"


def compare_groups(
    normal, pneumonia, alpha: float = ALPHA, n_permutations: int = 9999, n_bootstrap: int = 2000, seed: int = SEED
) -> dict:
    """Every two-group test on the NORMAL and PNEUMONIA values (each at least 2 finite numbers), PNEUMONIA minus
    NORMAL: groups (n, mean, sd), student / welch (t, df, p), mannwhitney (u, p), permutation (p, n_resamples; exact
    when there are fewer distinct relabellings), cohens_d, hedges_g with its percentile bootstrap CI, shapiro and
    levene p, alpha, reject_null (Welch p < alpha) and effect_size_label."""
    normal, pneumonia = validate_groups(normal, pneumonia)
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must be between 0 and 1, got {alpha}")
    student = st.ttest_ind(pneumonia, normal, equal_var=True)
    welch = st.ttest_ind(pneumonia, normal, equal_var=False)
    mann = st.mannwhitneyu(pneumonia, normal, alternative="two-sided")
    rng = np.random.default_rng(seed)
    permutation = st.permutation_test(
        (pneumonia, normal), mean_difference, n_resamples=n_permutations, alternative="two-sided", rng=rng,
        vectorized=True, batch=1000,
    )  # fmt: skip
    constant = np.ptp(normal) == 0 and np.ptp(pneumonia) == 0
    g_ci = [float("nan"), float("nan")]
    if not constant:
        with np.errstate(invalid="ignore"):  # resamples with zero spread give an infinite g; percentiles still work
            boot = st.bootstrap(  # vectorised: one numpy pass per batch instead of a Python call per resample
                (normal, pneumonia), hedges_g_along, n_resamples=n_bootstrap, method="percentile", rng=rng,
                vectorized=True,
            )  # fmt: skip
        g_ci = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
    d = cohens_d(normal, pneumonia)

    def shapiro_p(x):
        return float(st.shapiro(x).pvalue) if len(x) >= 3 and np.ptp(x) > 0 else float("nan")

    return {
        "groups": {
            name: {"n": int(len(x)), "mean": float(np.mean(x)), "sd": float(np.std(x, ddof=1))}
            for name, x in (("NORMAL", normal), ("PNEUMONIA", pneumonia))
        },
        "difference": "PNEUMONIA minus NORMAL",
        "student": {"t": float(student.statistic), "df": float(student.df), "p": float(student.pvalue)},
        "welch": {"t": float(welch.statistic), "df": float(welch.df), "p": float(welch.pvalue)},
        "mannwhitney": {"u": float(mann.statistic), "p": float(mann.pvalue)},
        "permutation": permutation_record(permutation, len(normal), len(pneumonia), n_permutations),
        "cohens_d": d,
        "hedges_g": hedges_g(normal, pneumonia),
        "hedges_g_ci": g_ci,
        "hedges_g_ci_resamples": int(n_bootstrap),
        "shapiro": {"NORMAL": {"p": shapiro_p(normal)}, "PNEUMONIA": {"p": shapiro_p(pneumonia)}},
        "levene": {"p": float(st.levene(normal, pneumonia).pvalue) if not constant else float("nan")},
        "alpha": alpha,
        "reject_null": bool(welch.pvalue < alpha),
        "effect_size_label": effect_size_label(d),
    }


def resampled_draws(
    normal, pneumonia, n_per_class: int = N_PER_CLASS, n_draws: int = N_DRAWS, alpha: float = ALPHA, seed: int = SEED
) -> dict:
    """Student's t and Cohen's d over many random n-vs-n draws: how often one draw would 'find' a difference."""
    normal, pneumonia = validate_groups(normal, pneumonia)
    for name, x in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        if len(x) < n_per_class:
            raise StatsInputError(f"the {name} group has {len(x)} values, fewer than the {n_per_class} drawn per class")
    rng = np.random.default_rng(seed)
    # One batch of draws: rows are draws, each a sample without replacement (argsort of uniforms).
    pick_n = np.argsort(rng.random((n_draws, len(normal))), axis=1)[:, :n_per_class]
    pick_p = np.argsort(rng.random((n_draws, len(pneumonia))), axis=1)[:, :n_per_class]
    a, b = normal[pick_n], pneumonia[pick_p]
    t = st.ttest_ind(b, a, axis=1, equal_var=True)
    var_a, var_b = a.var(axis=1, ddof=1), b.var(axis=1, ddof=1)
    pooled = np.sqrt(((n_per_class - 1) * var_a + (n_per_class - 1) * var_b) / (2 * n_per_class - 2))
    d = np.divide(b.mean(axis=1) - a.mean(axis=1), pooled, out=np.zeros(n_draws), where=pooled > 0)
    p = np.asarray(t.pvalue, dtype=float)
    defined = np.isfinite(p)  # a draw whose two groups are both constant has no t-test p
    return {
        "n_per_class": n_per_class,
        "n_draws": n_draws,
        "seed": seed,
        "alpha": alpha,
        "test": "student",
        "n_draws_without_p": int((~defined).sum()),
        "share_p_below_alpha": float(np.mean(p[defined] < alpha)) if defined.any() else float("nan"),
        "p_quantiles": {
            q: float(np.quantile(p[defined], float(q))) if defined.any() else float("nan")
            for q in ("0.05", "0.25", "0.5", "0.75", "0.95")
        },
        "d_quantiles": {q: float(np.quantile(d, float(q))) for q in ("0.05", "0.25", "0.5", "0.75", "0.95")},
        "p_values": p.tolist(),
        "d_values": d.tolist(),
    }


def format_p(p: float | None) -> str:
    """p-values in scientific notation, never rounded to 0.0000; n/a where there is none (NaN, or null once written
    to JSON: both groups constant)."""
    if p is None or p != p:
        return "n/a"
    return f"{p:.3e}"


def format_number(value: float | None, spec: str = ".2f") -> str:
    """A statistic for a sentence or a title; n/a where there is none (NaN, or null once written to JSON)."""
    return "n/a" if value is None or value != value else format(value, spec)


class ScoreColumn(NamedTuple):
    normal: np.ndarray
    pneumonia: np.ndarray
    dropped: dict[str, int]  # rows left out because the score is NaN or empty, per class


def read_scores(path, score_columns: list[str]) -> dict[str, ScoreColumn]:
    """Read SCORES.csv: a `label` column (NORMAL / PNEUMONIA) and numeric score columns.

    Returns {column: ScoreColumn}. Rows whose score is NaN or empty (a run writes NaN for an empty map or a
    region a film lacks) are dropped and counted, as the run does. Every other problem is a StatsInputError
    that says what to fix: a missing column, an unknown label, text or infinity in a score, a duplicated path,
    a small group.
    """

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StatsInputError(f"cannot read {path}: {exc}") from exc
    if not rows:
        raise StatsInputError(f"{path} has no data rows")
    header = list(rows[0].keys())
    missing = [c for c in ["label", *score_columns] if c not in header]
    if missing:
        raise StatsInputError(
            f"{path} lacks column(s) {', '.join(missing)}; it has: {', '.join(str(h) for h in header)}"
        )
    if "path" in header:
        seen, dupes = set(), []
        for row in rows:  # every repeat of a path seen before is a duplicate
            (dupes.append if row["path"] in seen else seen.add)(row["path"])
        if dupes:
            raise StatsInputError(
                f"{path} lists {len(dupes)} path(s) twice (e.g. {dupes[0]}): each image must count once"
            )
    labels = []
    for line, row in enumerate(rows, start=2):
        value = (row["label"] or "").strip().upper()
        value = {"0": "NORMAL", "1": "PNEUMONIA"}.get(value, value)
        if value not in ("NORMAL", "PNEUMONIA"):
            raise StatsInputError(f"{path}, line {line}: label '{row['label']}' is not NORMAL or PNEUMONIA")
        labels.append(value)
    labels = np.array(labels)
    out = {}
    for column in score_columns:
        values = np.empty(len(rows))
        for line, row in enumerate(rows, start=2):
            cell = (row[column] or "").strip()
            try:
                values[line - 2] = float(cell) if cell else np.nan
            except (TypeError, ValueError):
                raise StatsInputError(f"{path}, line {line}: {column} = '{row[column]}' is not a number") from None
        bad = np.flatnonzero(np.isinf(values))
        if len(bad):
            raise StatsInputError(
                f"{path}: {column} is infinite on {len(bad)} row(s), first on line {bad[0] + 2}; "
                "remove or fix those rows"
            )
        keep = ~np.isnan(values)
        normal, pneumonia = values[keep & (labels == "NORMAL")], values[keep & (labels == "PNEUMONIA")]
        validate_groups(normal, pneumonia)
        dropped = {name: int(np.sum(~keep & (labels == name))) for name in ("NORMAL", "PNEUMONIA")}
        out[column] = ScoreColumn(normal, pneumonia, dropped)
    return out


def draw_sample(normal: np.ndarray, pneumonia: np.ndarray, n_per_class: int | None, seed: int) -> dict[str, np.ndarray]:
    """The original protocol's random n-per-class sample, as indices into each group (all when n_per_class is None).
    NORMAL is drawn first, then PNEUMONIA, from one generator seeded with `seed`."""
    if n_per_class is None:
        return {"NORMAL": np.arange(len(normal)), "PNEUMONIA": np.arange(len(pneumonia))}
    rng = np.random.default_rng(seed)
    for name, x in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        if len(x) < n_per_class:
            raise StatsInputError(
                f"the {name} group has {len(x)} values, fewer than --n-per-class {n_per_class}; use --n-per-class all"
            )
    # sorted: the sample keeps the rows' order, so resampling tests on it see the values in file order
    return {
        "NORMAL": np.sort(rng.choice(len(normal), n_per_class, replace=False)),
        "PNEUMONIA": np.sort(rng.choice(len(pneumonia), n_per_class, replace=False)),
    }


def score_report(
    normal: np.ndarray,
    pneumonia: np.ndarray,
    n_per_class: int | None = N_PER_CLASS,
    n_draws: int = N_DRAWS,
    alpha: float = ALPHA,
    seed: int = SEED,
) -> dict:
    """Everything stats.json holds for one score, whether `pneumocam stats` or a run wrote it.

    Takes each class's finite values; returns {"sample": every test on the seeded n-per-class draw (the original
    protocol) with "draw" (n, seed and the drawn indices), "all_images": the same on every value, "resampled":
    p and d over n_draws other draws (when both classes hold more than n values)}.
    """
    normal, pneumonia = validate_groups(normal, pneumonia)
    picked = draw_sample(normal, pneumonia, n_per_class, seed)
    sample = compare_groups(normal[picked["NORMAL"]], pneumonia[picked["PNEUMONIA"]], alpha=alpha, seed=seed)
    sample["draw"] = {"n_per_class": n_per_class, "seed": seed, "indices": {k: v.tolist() for k, v in picked.items()}}
    result = {
        "sample": sample,
        "all_images": compare_groups(normal, pneumonia, alpha=alpha, seed=seed) if n_per_class is not None else sample,
    }
    if n_per_class is not None and n_draws > 0 and min(len(normal), len(pneumonia)) > n_per_class:
        result["resampled"] = resampled_draws(normal, pneumonia, n_per_class, n_draws, alpha, seed)
    return result


def group_statistics(
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
    n_per_class: int | None,
    n_draws: int,
    alpha: float,
    seed: int,
    descriptions: dict[str, str] | None = None,
) -> tuple[dict, dict]:
    """stats.json of a run: score_report (the `stats` command's function) per score, on each class's finite values
    in row order. NaN rows (empty maps, missing regions) are left out and counted; a sample larger than a class
    shrinks to that class, with a note. Returns (statistics, notes)."""
    labels = np.asarray(labels)
    out, notes = {}, {}
    for name, values in scores.items():
        finite = np.isfinite(values)
        normal, pneumonia = values[(labels == 0) & finite], values[(labels == 1) & finite]
        n = n_per_class
        if n is not None and n > min(len(normal), len(pneumonia)) >= 2:
            notes.setdefault(
                "n_per_class",
                f"asked for {n} per class, but {name} has only {min(len(normal), len(pneumonia))} "
                "values in its smaller class: the sample uses them all",
            )
            n = min(len(normal), len(pneumonia))
        entry = {
            "description": (descriptions or {}).get(name, name),
            "dropped_nan_rows": {
                "NORMAL": int(np.sum(~finite & (labels == 0))),
                "PNEUMONIA": int(np.sum(~finite & (labels == 1))),
            },
        }
        try:
            entry |= score_report(normal, pneumonia, n, n_draws, alpha, seed)
        except StatsInputError as exc:
            entry["error"] = str(exc)
        out[name] = entry
    return out, notes


def summary_text(entry: dict, score: str) -> str:
    """The original write-up's layout (Summary Statistics, Statistical Test Results, Effect Size) for one stats.json
    entry (score_report's layout): its sample's tests, and the spread over resampled draws when there is one."""
    result = entry["sample"]
    g = result["groups"]
    lines = [
        f"Summary Statistics ({score}; difference = {result['difference']})",
        f"{'Class':<12}{'n':>6}{'Mean':>14}{'SD':>14}",
    ]
    for name in ("NORMAL", "PNEUMONIA"):
        lines.append(f"{name:<12}{g[name]['n']:>6}{g[name]['mean']:>14.6g}{g[name]['sd']:>14.6g}")
    lines += [
        "",
        "Statistical Test Results",
        f"  Student's t-test (original): t = {format_number(result['student']['t'], '.4f')}, "
        f"df = {format_number(result['student']['df'], '.0f')}, p = "
        f"{format_p(result['student']['p'])}",
        f"  Welch's t-test:              t = {format_number(result['welch']['t'], '.4f')}, "
        f"df = {format_number(result['welch']['df'], '.1f')}, p = "
        f"{format_p(result['welch']['p'])}",
        f"  Mann-Whitney U:              U = {result['mannwhitney']['u']:.1f}, p = "
        f"{format_p(result['mannwhitney']['p'])}",
        f"  Permutation test:            p = {format_p(result['permutation']['p'])} "
        f"({permutation_text(result['permutation'])})",
        f"  Shapiro-Wilk p: NORMAL {format_p(result['shapiro']['NORMAL']['p'])}, PNEUMONIA "
        f"{format_p(result['shapiro']['PNEUMONIA']['p'])};"
        f" Levene p = {format_p(result['levene']['p'])}",
        f"  At alpha = {result['alpha']}: {'reject' if result['reject_null'] else 'do not reject'} the null hypothesis "
        "(Welch)",
        "",
        "Effect Size",
        f"  Cohen's d = {format_number(result['cohens_d'], '.4f')} ({result['effect_size_label']}); Hedges' g = "
        f"{format_number(result['hedges_g'], '.4f')}, "
        f"95% CI [{format_number(result['hedges_g_ci'][0], '.4f')}, {format_number(result['hedges_g_ci'][1], '.4f')}]",
    ]
    if entry.get("resampled"):
        r = entry["resampled"]
        missing = r.get("n_draws_without_p", 0)
        lines.append(
            f"  Over {r['n_draws']} random {r['n_per_class']} vs {r['n_per_class']} draws"
            + (f" ({missing} without a p: both groups constant)" if missing else "")
            + f": {r['share_p_below_alpha']:.1%} "
            f"have p < {r['alpha']}; median p {r['p_quantiles']['0.5']:.3e}, median d {r['d_quantiles']['0.5']:.3f}"
        )
    return "\n".join(lines)
