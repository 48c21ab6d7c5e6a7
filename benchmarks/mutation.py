"""Mutation testing of the modules that compute reported numbers (pyproject.toml [tool.mutmut]: only_mutate), with
mutmut; the survivors per module go into a record. Not run in CI: it runs the selected tests once per mutant.

    python benchmarks/mutation.py [--max-children 2] [--rerun-timeouts] [--record mutmut] [NAME ...]

NAME: mutants to run (mutmut's names, `*` allowed, e.g. 'pneumocam.evaluation.*' or one survivor's name); every
mutant is reported, those not run keep their earlier result or "not checked".

Exits 1 when mutmut fails or a mutant survives. Each survivor is listed by name (`mutmut show NAME` prints its diff);
one that cannot change a reported number is marked in EQUIVALENT with the reason.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
import tomllib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import RESULTS, stamp, write_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).with_name("mutmut")
PYTEST_ARGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["pytest_add_cli_args"]


def by_function(module: str, *entries: tuple[str, tuple[int, ...], str]) -> dict[str, str]:
    """EQUIVALENT's entries of one module: (function, its mutant numbers, why) -> {mutant name: why}."""
    return {f"pneumocam.{module}.x_{name}__mutmut_{k}": why for name, numbers, why in entries for k in numbers}


# Survivors read and judged equivalent (no reported number can change), by mutant name: why.
FLOAT_ALREADY = "the array is float64 already (probabilities, p-values): the dtype argument changes nothing"
NAMES_ARE_TEXT = (
    "population and stratum names are text (manifest values) or None: the dtype and the sort key give the same names "
    "in the same order"
)
EQUIVALENT: dict[str, str] = {
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_18": "argsort's default axis (-1) is axis 1 of a 2-D array",
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_25": "argsort's default axis (-1) is axis 1 of a 2-D array",
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_37": "scipy's ttest_ind defaults to equal_var=True",
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_86": FLOAT_ALREADY,
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_88": FLOAT_ALREADY,
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_110": "the mean of no p-values is NaN, what the else gives",
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_113": "differs only for a p equal to alpha in every bit",
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_116": 'float("NAN") is NaN',
    "pneumocam.analysis.stats.x_resampled_draws__mutmut_129": 'float("NAN") is NaN',
    "pneumocam.analysis.stats.x_read_scores__mutmut_9": "Python's codec names ignore case: UTF-8-SIG is utf-8-sig",
    "pneumocam.analysis.stats.x_read_scores__mutmut_54": (
        "an empty label is refused either way, with the same message (it quotes the cell, not the stand-in)"
    ),
    **dict.fromkeys(
        ("pneumocam.analysis.stats.x_summary_text__mutmut_184", "pneumocam.analysis.stats.x_summary_text__mutmut_186"),
        "an entry without n_draws_without_p: None and 0 are both false, no parenthetical either way",
    ),
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_4": FLOAT_ALREADY,
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_6": FLOAT_ALREADY,
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_8": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_10": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_13": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_15": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_61": "the guard's verdicts are booleans already",
    "pneumocam.evaluation.populations.x_group_metrics__mutmut_63": "the guard's verdicts are booleans already",
    "pneumocam.evaluation.populations.x_leave_one_population_out__mutmut_3": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_leave_one_population_out__mutmut_5": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_leave_one_population_out__mutmut_8": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_leave_one_population_out__mutmut_10": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_travelling_thresholds__mutmut_4": FLOAT_ALREADY,
    "pneumocam.evaluation.populations.x_travelling_thresholds__mutmut_6": FLOAT_ALREADY,
    "pneumocam.evaluation.populations.x_travelling_thresholds__mutmut_8": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_travelling_thresholds__mutmut_10": NAMES_ARE_TEXT,
    "pneumocam.evaluation.populations.x_sensitivity_threshold__mutmut_4": FLOAT_ALREADY,
    "pneumocam.evaluation.populations.x_sensitivity_threshold__mutmut_6": FLOAT_ALREADY,
    **{
        f"pneumocam.analysis.regions.x_{name}__mutmut_{k}": "numpy reads a negative reshape size as the unknown one"
        for name, ks in {
            "mass_share": (13, 23, 32),
            "area_share": (7, 18),
            "pointing_game": (7, 21),
            "mask_measures": (46,),
        }.items()
        for k in ks
    },
    **by_function(
        "analysis.importance",
        ("empty_maps", (8,), "numpy reads a negative reshape size as the unknown one"),
        ("importance_scores", (32,), "numpy reads a negative reshape size as the unknown one"),
        ("compared_scores", (3,), "with two classes, 'not class c' for c in (0, 1) names the same two classes"),
        ("importance_scores", (1,), "the chunks only bound memory: each map is scored alone, whatever the chunk"),
        ("importance_scores", (13,), "the chunks only bound memory: overlapping chunks write the same values"),
        ("importance_scores", (5, 7), "np.empty's default dtype is float64, the one written"),
        ("importance_scores", (16,), "astype(None) is float64, what the line asks for"),
        ("importance_scores", (64,), "partition's default axis (-1) is axis 1 of a 2-D array"),
        (
            "importance_scores",
            (87, 91, 92, 96, 122, 126, 127, 129, 132),
            "only an empty map has a maximum (or total) of 0, outside `where`, and an empty map's scores are all set "
            "to NaN after",
        ),
        ("importance_scores", (136, 137), "None written into a float array is NaN"),
    ),
    **by_function(
        "analysis.controls",
        (
            "_moved",
            (6, 8),
            "a move by exactly the film's size already slices to nothing: the early return need only catch moves "
            "past it",
        ),
        ("control_regions", (7, 9), "body masks are boolean or 0/255: True & 255 counts as True & True does"),
        ("control_regions", (16, 90), 'float("NAN") is NaN'),
        ("control_regions", (18, 25), "masks are square: shape[1] is shape[0]"),
        (
            "control_regions",
            (37, 46, 38, 47),
            "range's stop only drops or adds moves by the film's whole side or more, which leave the film and are "
            "never kept (with step 1, under 16 px, it also drops side - 1: never one of the nearest draws)",
        ),
        ("control_regions", (84,), "the mean of no overlaps is NaN, what the else gives"),
        ("impute", (8, 10), "`removed` is read only by flatnonzero, which takes any dtype's non-zero as True"),
        (
            "impute",
            (43, 44),
            "the eight neighbours and their weights are symmetric: (-dy, dx) walks the same set with the same weights",
        ),
        ("_weight_on_film", (4, 5), "the eight neighbours and their weights are symmetric: the same sum"),
        ("impute", (110, 112), "the diagonal puts every row and column in the matrix: the inferred shape is n x n"),
        ("impute", (121,), "with noise 0 the added draw is all zeros"),
        (
            "impute",
            (22, 24),
            "the indices are whole numbers either way, and scipy's coo_matrix casts them to its index type",
        ),
        (
            "impute",
            (74, 82, 83),
            "a neighbour off the film gets a placeholder that is never read: `inside` masks every use of it",
        ),
        (
            "impute",
            (122,),
            "the noise is a Gaussian symmetric about 0: subtracting the seeded draw is another draw of that noise",
        ),
    ),
    "pneumocam.analysis.regions.x_mass_share__mutmut_2": "astype(None) is float64, what the line asks for",
    "pneumocam.analysis.regions.x_mass_share__mutmut_44": "without `where` an empty map's 0 / 0 is NaN, the default",
    "pneumocam.analysis.regions.x_mass_share__mutmut_49": "0 / 0 is NaN, what `out` holds for an empty map",
    "pneumocam.analysis.regions.x_pointing_game__mutmut_15": "astype(None) is float64, what astype(float) gives",
    "pneumocam.analysis.regions.x_pointing_game__mutmut_23": "None written into a float array is NaN",
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_8": "OpenCV's default connectivity is 8",
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_10": "OpenCV's default connectivity is 8",
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_15": "masks are square: shape[1] is shape[0]",
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_35": "masks are square: shape[1] is shape[0]",
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_24": (
        "with every column selected, a column the lung misses gets bottom = last row: no band pixel below it"
    ),
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_44": "the fill value is read only in columns the lung misses",
    "pneumocam.analysis.regions.x_diaphragm_band__mutmut_45": "the fill value is read only in columns the lung misses",
    "pneumocam.analysis.regions.x_attention_measures__mutmut_3": "films and maps are square: shape[1] is shape[-1]",
    "pneumocam.analysis.regions.x_attention_measures__mutmut_4": "films and maps are square: shape[-2] is shape[-1]",
    **dict.fromkeys(
        (
            "pneumocam.analysis.regions.x_attention_measures__mutmut_105",
            "pneumocam.analysis.regions.x_attention_measures__mutmut_107",
        ),
        "a region of no pixels holds no mass: its share / area is numpy's 0 / 0, NaN, what the else gives",
    ),
    **dict.fromkeys(
        [f"pneumocam.analysis.regions.x_mask_measures__mutmut_{k}" for k in (1, 23, 26, 27, 28)]
        + ["pneumocam.analysis.regions.x_split_attention__mutmut_1"],
        "the chunks only bound memory: each film's values are the same whichever chunk (or overlapping chunks) "
        "computes them",
    ),
    "pneumocam.analysis.regions.x_mask_measures__mutmut_38": (
        "a film without a mask file loads as an all-zero mask, so 'non-empty' already implies 'found'"
    ),
    "pneumocam.analysis.regions.x_mask_measures__mutmut_58": "None written into a float array is NaN",
    "pneumocam.analysis.regions.x_mask_measures__mutmut_71": "None written into a float array is NaN",
    **dict.fromkeys(
        (
            "pneumocam.analysis.regions.x_mask_measures__mutmut_64",
            "pneumocam.analysis.regions.x_mask_measures__mutmut_67",
        ),
        "the maps are zeroed on the ignore pixels the line before, and no ignore pixel is a mask pixel",
    ),
    **dict.fromkeys(
        [f"pneumocam.analysis.regions.x_split_attention__mutmut_{k}" for k in (30, 32, 34, 36, 37)],
        "without lung masks no film is found: the empty masks and the ignore layer are never read, only each "
        "found[i]'s truth (0.0 is false)",
    ),
    **dict.fromkeys(
        (
            "pneumocam.analysis.stats.x_draw_sample__mutmut_21",
            "pneumocam.analysis.stats.x_draw_sample__mutmut_31",
            "pneumocam.evaluation.populations.x_recalibration_sample__mutmut_7",
        ),
        "numpy reads replace=None as false: a draw without replacement",
    ),
    "pneumocam.analysis.stats.x_score_report__mutmut_43": (
        "with n_per_class None the sample is every value in row order: the all-images tests are the sample's (same "
        "values, alpha and seed), only without the 'draw' entry, which readers take from the sample"
    ),
    **dict.fromkeys(
        (
            "pneumocam.evaluation.calibration.x_calibrate__mutmut_32",
            "pneumocam.evaluation.calibration.x_calibrate__mutmut_33",
        ),
        "differs only for a fitted T equal to the margin in every bit",
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.calibration.x_fit_temperature__mutmut_{k}" for k in (10, 14, 28)],
        "scipy's minimize_scalar takes the bounded method whenever bounds are given and reads method names in any case",
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.calibration.x_fit_temperature__mutmut_{k}" for k in (11, 15, 29, 30)],
        "scipy's default tolerance on log T (1e-5 for 1e-6) moves T by at most 1.4e-6 of itself (20 simulated "
        "splits, measured), far below the three digits any report prints",
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.calibration.x_fit_temperature__mutmut_{k}" for k in (3, 5)],
        "float32 logits (the model's own width) move T by about 2e-8 of itself (measured): below any printed digit",
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.calibration.x_reliability_bins__mutmut_{k}" for k in (33, 34, 49)],
        "digitize against the n_bins - 1 inner edges returns 0 .. n_bins - 1 already: the clip only guards",
    ),
    "pneumocam.evaluation.leakage.x_refuse_seen__mutmut_3": "strict: an overlap raises before warn is called",
    "pneumocam.evaluation.leakage.x_check_leakage__mutmut_20": "the examples field's default is the empty list given",
    **dict.fromkeys(
        [f"pneumocam.analysis.stats.x_cohens_d__mutmut_{k}" for k in (7, 9, 11, 13)]
        + [f"pneumocam.analysis.stats.x_hedges_g__mutmut_{k}" for k in (7, 9, 11, 13)],
        "the scores reach it as float64 (validate_groups casts them); integer input gives float64 means and variances",
    ),
    **dict.fromkeys(
        [f"pneumocam.analysis.stats.x_cohens_d_along__mutmut_{k}" for k in (39, 40, 41, 42)]
        + ["pneumocam.analysis.stats.x_compare_groups__mutmut_76"],
        "numpy's error state decides only whether a warning is printed, not the value",
    ),
    "pneumocam.analysis.stats.x_hedges_g_along__mutmut_7": (
        "scipy calls the statistic with axis=-1, cohens_d_along's default"
    ),
    "pneumocam.analysis.stats.x_compare_groups__mutmut_20": "scipy's ttest_ind defaults to equal_var=True",
    "pneumocam.analysis.stats.x_compare_groups__mutmut_25": "scipy reads equal_var=None as false: Welch's test",
    **dict.fromkeys(
        [f"pneumocam.analysis.stats.x_compare_groups__mutmut_{k}" for k in (36, 52)],
        "scipy's default alternative is two-sided, as written",
    ),
    **dict.fromkeys(
        [f"pneumocam.analysis.stats.x_compare_groups__mutmut_{k}" for k in (38, 57, 93)],
        "scipy reads the alternative and the interval method in any case",
    ),
    **dict.fromkeys(
        [f"pneumocam.analysis.stats.x_compare_groups__mutmut_{k}" for k in (47, 54, 58, 85, 91, 94, 48, 55, 59)],
        "whether scipy calls the statistic vectorised, and in batches of what size, changes only speed and memory: "
        "the same generator gives the same resamples",
    ),
    **dict.fromkeys(
        [f"pneumocam.analysis.stats.x_compare_groups__mutmut_{k}" for k in (71, 74, 115, 221)], 'float("NAN") is NaN'
    ),
    "pneumocam.analysis.stats.x_compare_groups__mutmut_212": "scipy's Levene p of two constant groups is NaN too",
    "pneumocam.analysis.stats.x_compare_groups__mutmut_227": "differs only for a Welch p equal to alpha in every bit",
    **dict.fromkeys(
        (
            "pneumocam.evaluation.calibration.x_calibrate__mutmut_1",
            "pneumocam.evaluation.calibration.x_calibrate__mutmut_2",
        ),
        "the method is compared with 'none' only: any other default fits the temperature, as 'temperature' does",
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.metrics.x_cluster_members__mutmut_{k}" for k in (9, 11, 13)]
        + [f"pneumocam.evaluation.metrics.x_roc_points__mutmut_{k}" for k in (7, 9, 16)],
        "the order of films among equal keys changes no figure: roc_points counts each group of tied scores at its "
        "last film, and a cluster's films enter a draw together",
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.metrics.x_roc_points__mutmut_{k}" for k in (12, 14, 19, 21)],
        "casting to float64 is exact and keeps the order and the ties of the scores it is given",
    ),
    **dict.fromkeys(
        (
            "pneumocam.evaluation.metrics.x_operating_points__mutmut_11",
            "pneumocam.evaluation.metrics.x_operating_points__mutmut_21",
        ),
        "differs only for a rate equal to the target plus or minus 1e-12 in every bit: no count of films gives it",
    ),
    "pneumocam.evaluation.metrics.x_youden_threshold__mutmut_32": (
        "when the best J is 0, roc_curve's first point (an infinite threshold, J = 0) is the argmax: refused as not "
        "finite either way"
    ),
    **dict.fromkeys(
        [f"pneumocam.evaluation.metrics.xǁBinaryMetricsǁ_threshold_free__mutmut_{k}" for k in (2, 8, 9)],
        "a cache that never hits recomputes the same figures",
    ),
    **dict.fromkeys(
        (
            "pneumocam.evaluation.metrics.xǁBinaryMetricsǁsummary__mutmut_20",
            "pneumocam.evaluation.metrics.xǁBinaryMetricsǁsummary__mutmut_53",
        ),
        "scikit-learn's default zero_division ('warn') gives 0, as 0 does, with a warning",
    ),
}
TEXT_ONLY = "changes only the text of a message or description (a string literal with a space), no number or key"
CODE_CHARACTERS = re.compile(r"[0-9\[\]{}()=<>:]")


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added source lines of `mutmut show`'s unified diff."""
    lines = diff.splitlines()
    removed = [x[1:] for x in lines if x.startswith("-") and not x.startswith("---")]
    added = [x[1:] for x in lines if x.startswith("+") and not x.startswith("+++")]
    return removed, added


def string_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of each string literal on one source line (an f-string is one literal)."""
    stripped = line.lstrip()
    offset = len(line) - len(stripped)
    for prefix, suffix in (("", ""), ("(", ")"), ("(", "")):  # a line alone may be part of a bracketed expression
        source, shift = prefix + stripped + suffix, offset - len(prefix)
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            continue
        return [(t.start[1] + shift, t.end[1] + shift, t.string) for t in tokens if t.type == tokenize.STRING]
    return []


def outside_braces(text: str) -> list[bool]:
    """Per character of a string literal: True where it is text, False inside an f-string's {expression}."""
    prefix = text[: len(text) - len(text.lstrip("rbufRBUF"))]
    depth, found = 0, []
    for char in text:
        if "f" in prefix.lower() and char == "{":
            depth += 1
        found.append(depth == 0)
        if "f" in prefix.lower() and char == "}":
            depth = max(0, depth - 1)
    return found


def text_only(diff: str) -> bool:
    """One line changed, and every changed piece lies in the text of one string literal that holds a space (a
    message or a description; not in an f-string's {expression}) and is no code (no digit, bracket, comparison or
    colon): conservative, a change it cannot place is not equivalent."""
    removed, added = changed_lines(diff)
    if len(removed) != 1 or len(added) != 1:
        return False
    before, after = removed[0], added[0]
    pieces = [
        op for op in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes() if op[0] != "equal"
    ]
    if not pieces:
        return False
    for literal_start, literal_end, text in string_spans(before):
        if " " not in text:
            continue
        plain = outside_braces(text)
        if all(
            literal_start < i1 and i2 < literal_end
            and all(plain[k - literal_start] for k in range(i1, max(i2, i1 + 1)))
            and not CODE_CHARACTERS.search(before[i1:i2]) and not CODE_CHARACTERS.search(after[j1:j2])
            for _, i1, i2, j1, j2 in pieces
        ):  # fmt: skip
            return True
    return False


def apply_mutant(source: str, diff: str) -> str | None:
    """The source with the mutant's removed lines replaced by its added ones; None unless the removed lines occur
    exactly once (a change that cannot be placed is not guessed)."""
    removed, added = changed_lines(diff)
    block = "\n".join(removed) + "\n"
    if not removed or source.count(block) != 1:
        return None
    return source.replace(block, "\n".join(added) + "\n" if added else "")


def pytest_command(test_file: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", *PYTEST_ARGS, "-p", "no:cacheprovider", str(test_file)]


@functools.cache
def wall_limit(test_file: Path) -> float | None:
    """Four times the unmutated test file's wall time here, and at least a minute; None when it fails unmutated."""
    began = time.perf_counter()
    run = subprocess.run(pytest_command(test_file), cwd=ROOT, capture_output=True)
    return max(60.0, 4 * (time.perf_counter() - began)) if run.returncode == 0 else None


def rerun_timeout(name: str) -> str:
    """A mutant mutmut stopped at its CPU limit ((estimated test time + 1 s) x 30: fast tests on session fixtures
    exceed it), or found no tests for, run again with a wall limit instead: its module's test file against a copy of
    src/ with the mutant applied. 'killed', 'survived', 'timeout' (still running at four times the unmutated file's
    time: the mutant hangs the tests, a loop that never ends, which a test run catches), or why it could not run."""
    test_file = ROOT / "tests" / f"test_{name.split('.x')[0].rsplit('.', 1)[1]}.py"
    limit_s = wall_limit(test_file)
    if limit_s is None:
        return f"not run: {test_file.name} fails unmutated"
    shown = subprocess.run([str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    header = re.search(r"^--- (src/\S+\.py)$", shown, re.MULTILINE)
    if not header:
        return "not run: no diff"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", copy)
        target = copy / Path(header.group(1)).relative_to("src")
        mutated = apply_mutant(target.read_text(), shown)
        if mutated is None:
            return "not run: the diff does not place"
        target.write_text(mutated)
        env = {**os.environ, "PYTHONPATH": str(copy)}
        where = subprocess.run(
            [sys.executable, "-c", "import pneumocam; print(pneumocam.__file__)"],
            env=env,
            capture_output=True,
            text=True,
        )
        if not where.stdout.startswith(str(copy)):
            return "not run: the copy is not what imports"
        try:
            run = subprocess.run(pytest_command(test_file), cwd=ROOT, env=env, capture_output=True, timeout=limit_s)
        except subprocess.TimeoutExpired:
            return "timeout"
    return {0: "survived", 1: "killed"}.get(run.returncode, f"not run: pytest exit {run.returncode}")


def classify(survivors: list[str]) -> dict[str, str]:
    """Each survivor marked equivalent: by name (EQUIVALENT), or by reading its diff (TEXT_ONLY)."""
    found = {}
    for name in survivors:
        if name in EQUIVALENT:
            found[name] = EQUIVALENT[name]
            continue
        shown = subprocess.run([str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True)
        if text_only(shown.stdout):
            found[name] = TEXT_ONLY
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    parser.add_argument(
        "--collect-only", action="store_true", help="Read the results of an earlier (possibly stopped) run only."
    )
    parser.add_argument(
        "--rerun-timeouts",
        action="store_true",
        help="Run each mutant mutmut timed out (or found no tests for) again: its module's test file, a wall limit.",
    )
    parser.add_argument("names", nargs="*", help="Only these mutants (mutmut's names; * allowed).")
    args = parser.parse_args(argv)
    stamped = stamp()
    command = [str(MUTMUT), "run", "--max-children", str(args.max_children), *args.names]
    ran = subprocess.run(["true"] if args.collect_only else command, cwd=ROOT)
    listed = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True)
    statuses = {}
    for line in listed.stdout.splitlines():
        name, _, status = line.strip().partition(": ")
        if status:
            statuses[name] = status
    module = lambda name: name.split(".x")[0]  # noqa: E731  (pneumocam.evaluation.metrics.x_youden__mutmut_3)
    per_module: dict[str, Counter] = {}
    for name, status in statuses.items():
        per_module.setdefault(module(name), Counter())[status] += 1
    earlier_path = RESULTS / f"{args.record}.json" if args.record else None
    earlier = json.loads(earlier_path.read_text()) if earlier_path and earlier_path.is_file() else {}
    # A module none of whose mutants this mutmut state has run (a fresh state, NAMEs in other modules) keeps the
    # earlier record's counts and survivors, named as carried with that record's commit.
    earlier_counts = earlier.get("figures", {}).get("per_module", {})
    carried_before = earlier.get("figures", {}).get("carried_modules") or {}
    carried_modules = {
        m: carried_before.get(m, earlier.get("commit"))  # the commit whose run produced them, through every carry
        for m, counts in per_module.items()
        if set(counts) == {"not checked"} and m in earlier_counts and "not checked" not in earlier_counts[m]
    }
    for m in carried_modules:
        per_module[m] = Counter(earlier["figures"]["per_module"][m])
        for name in earlier["figures"]["survivors"]:
            if module(name) == m:
                statuses[name] = "survived"
        for name in [n for n in statuses if module(n) == m and statuses[n] == "not checked"]:
            del statuses[name]  # counted in the carried counts
    # mutmut's CPU limit stops some mutants whose killing tests are fast but sit on slow session fixtures, and its
    # map of which tests reach a function can miss one (a method called through a dataclass): both are run again
    carried = earlier.get("figures", {}).get("timeouts_rerun", {})
    timeouts = sorted(n for n, s in statuses.items() if s in ("timeout", "no tests"))
    # A verdict of an earlier rerun is kept for a mutant that timed out (or had no tests) again in mutmut, unless
    # asked to rerun it (--rerun-timeouts reruns those among the NAMEs given, or every one)
    asked = [n for n in timeouts if not args.names or any(fnmatch.fnmatchcase(n, p) for p in args.names)]
    reruns = {n: rerun_timeout(n) if args.rerun_timeouts and n in asked else carried.get(n) for n in timeouts}
    reruns = {n: verdict for n, verdict in reruns.items() if verdict is not None}
    for name, verdict in reruns.items():
        source = "rerun" if args.rerun_timeouts and name in asked else "an earlier rerun"
        print(f"{name}: {statuses[name]}; its test file under a wall limit ({source}): {verdict}")
        statuses[name] = "survived" if verdict == "survived" else statuses[name]
    reruns |= {n: verdict for n, verdict in carried.items() if module(n) in carried_modules}  # already in survivors
    survivors = sorted(n for n, s in statuses.items() if s == "survived")
    # not reached by a stopped run, or found no tests for and never run against its module's test file
    unchecked = sum(1 for n, s in statuses.items() if s == "not checked" or (s == "no tests" and n not in reruns))
    equivalent = classify(survivors)
    unexplained = [n for n in survivors if n not in equivalent]
    figures = {
        "mutants": sum(sum(c.values()) for c in per_module.values()),
        "per_module": {m: dict(c) for m, c in sorted(per_module.items())},
        "survivors": survivors,
        "equivalent": equivalent,
        "unexplained_survivors": unexplained,
        "mutmut_exit": ran.returncode,
        "not_checked": unchecked,  # mutants a stopped run did not reach, or 'no tests' ones not run again
        # each mutmut timeout's (and 'no tests' mutant's) verdict under a wall limit instead (--rerun-timeouts)
        "timeouts_rerun": reruns,
        "carried_modules": carried_modules,  # module: the commit of the earlier record whose results it keeps
    }
    for m, counts in figures["per_module"].items():
        print(f"{m}: {dict(counts)}")
    print(f"{len(survivors)} survived ({len(unexplained)} not marked equivalent)")
    if args.record:
        note = "mutmut over pyproject.toml's only_mutate, each mutant against the selected tests"
        if args.names:
            note += f"; this run ran {' '.join(args.names)}, the other mutants keep the results of earlier runs"
        if args.collect_only:
            note += (
                "; collected from an earlier run (possibly stopped: see not_checked), whose mutants ran against the "
                "tests of the tree mutmut copied when that run started, not necessarily this record's commit"
            )
        write_record(args.record, figures, note=note, stamped=stamped)
    return 0 if ran.returncode == 0 and not unexplained and not unchecked else 1


if __name__ == "__main__":
    sys.exit(main())
