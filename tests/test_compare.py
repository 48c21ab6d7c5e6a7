"""compare: paired differences between two runs on the same images, against an explicit bootstrap and scipy."""

import csv
import json

import numpy as np
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from pneumocam.analysis.compare import compare_runs
from pneumocam.cli.app import app


def write_run(folder, paths, labels, probs, share_lungs, threshold):
    folder.mkdir(parents=True)
    with open(folder / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "prob_pneumonia", "pred"])
        w.writerows([p, y, f"{q:.6f}", int(q >= 0.5)] for p, y, q in zip(paths, labels, probs))
    with open(folder / "importance.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "share_lungs"])
        w.writerows([p, ["NORMAL", "PNEUMONIA"][y], repr(float(s))] for p, y, s in zip(paths, labels, share_lungs))
    metrics = {"threshold_0.5": {"threshold": 0.5}, "threshold_youden_val": {"threshold": threshold}}
    (folder / "results.json").write_text(json.dumps({"provenance": {}, "metrics": metrics}))


@pytest.fixture
def two_runs(tmp_path, rng):
    n = 80
    labels = np.array([0, 1] * (n // 2))
    paths = [
        f"/d/{['NORMAL', 'PNEUMONIA'][y]}/person{i // 2}_bacteria_{i}.jpeg" for i, y in enumerate(labels)
    ]  # 2 films each
    a = np.round(np.clip(0.3 * labels + rng.random(n) * 0.7, 0, 1), 6)
    b = np.round(np.clip(0.5 * labels + rng.random(n) * 0.5, 0, 1), 6)
    share_a, share_b = rng.random(n) * 0.5, rng.random(n) * 0.5 + 0.2
    share_b[3] = np.nan  # an empty map in B: that image drops out of the paired test
    write_run(tmp_path / "A", paths, labels, a, share_a, 0.45)
    write_run(tmp_path / "B", paths, labels, b, share_b, 0.55)
    return tmp_path / "A", tmp_path / "B", labels, a, b, share_a, share_b


def test_paired_differences_equal_sklearn_and_scipy(two_runs):
    run_a, run_b, labels, a, b, share_a, share_b = two_runs
    result = compare_runs(run_a, run_b, n_resamples=200, seed=5)
    cls = result["classification"]
    assert cls["resampled_unit"] == "patient" and cls["n_images"] == 80
    assert cls["roc_auc"]["difference"] == pytest.approx(roc_auc_score(labels, b) - roc_auc_score(labels, a))
    acc = np.mean((b >= 0.55) == labels) - np.mean((a >= 0.45) == labels)
    assert cls["accuracy"]["difference"] == pytest.approx(acc)
    att = result["attention"]["share_lungs"]
    for c, name in enumerate(("NORMAL", "PNEUMONIA")):
        keep = (labels == c) & np.isfinite(share_b)
        assert att[name]["n"] == keep.sum() and att[name]["B"] == pytest.approx(share_b[keep].mean())
        assert att[name]["wilcoxon_p"] == pytest.approx(wilcoxon(share_b[keep], share_a[keep]).pvalue)


def test_the_difference_interval_is_the_paired_cluster_bootstrap_enumerated(tmp_path):
    """5 patients of 2 films: every one of the 5^5 draws of patients with replacement, enumerated (draws with one
    class only have no AUC); compare's percentile interval of B - A sits at that distribution's 2.5% and 97.5%
    points within the Monte Carlo error of 2000 draws (4 standard errors, judged by the share on either side)."""
    import itertools

    labels = np.array([0, 1, 0, 0, 1, 1, 0, 1, 1, 1])
    paths = [f"/d/{['NORMAL', 'PNEUMONIA'][y]}/person{i // 2}_bacteria_{i}.jpeg" for i, y in enumerate(labels)]
    a = np.array([0.3, 0.6, 0.2, 0.5, 0.4, 0.7, 0.35, 0.8, 0.45, 0.9])
    b = np.array([0.2, 0.7, 0.4, 0.1, 0.6, 0.65, 0.3, 0.75, 0.8, 0.5])
    write_run(tmp_path / "A", paths, labels, a, np.full(10, 0.5), 0.5)
    write_run(tmp_path / "B", paths, labels, b, np.full(10, 0.5), 0.5)
    interval = compare_runs(tmp_path / "A", tmp_path / "B", n_resamples=2000, seed=3)["classification"]["roc_auc"]

    def auc(y, s):  # the definition: pairs ranked right, ties one half
        pos, neg = s[y == 1][:, None], s[y == 0][None, :]
        return ((pos > neg) + 0.5 * (pos == neg)).mean()

    exact = []
    for drawn in itertools.product(range(5), repeat=5):
        idx = np.concatenate([[2 * k, 2 * k + 1] for k in drawn])
        if labels[idx].min() != labels[idx].max():
            exact.append(auc(labels[idx], b[idx]) - auc(labels[idx], a[idx]))
    exact = np.array(exact)
    assert interval["difference"] == pytest.approx(auc(labels, b) - auc(labels, a))
    tolerance = 4 * np.sqrt(0.025 * 0.975 / 2000)
    for end, q in zip(interval["ci95"], (0.025, 0.975)):
        assert np.mean(exact < end - 1e-12) <= q + tolerance and np.mean(exact <= end + 1e-12) >= q - tolerance


def test_compare_command_and_its_errors(two_runs, tmp_path):
    run_a, run_b, *_ = two_runs
    result = CliRunner().invoke(
        app, ["compare", str(run_a), str(run_b), "--bootstrap", "50", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and (next((tmp_path / "out").glob("compare-*")) / "compare.json").is_file()
    missing = CliRunner().invoke(app, ["compare", str(run_a), str(tmp_path)])
    assert missing.exit_code == 2 and "no predictions.csv" in missing.output


def test_compare_shows_each_runs_reliance_check_and_what_it_was_trained_against(two_runs):
    run_a, run_b, *_ = two_runs

    def with_reliance(run, aucs, verdict, against=None):
        results = json.loads((run / "results.json").read_text())
        variants = {name: {"roc_auc": auc} for name, auc in aucs.items()}
        results |= {"reliance": {"variants": variants, "verdict": verdict}, "trained_against": against}
        (run / "results.json").write_text(json.dumps(results))

    with_reliance(run_a, {"whole": 0.95, "only_lungs_fill": 0.60}, "the decision rests largely outside the lungs")
    penalty = {"explanation": "gradcam", "weight": 1.0}
    with_reliance(run_b, {"whole": 0.96, "only_lungs_fill": 0.62}, "mixed", penalty)
    result = compare_runs(run_a, run_b, n_resamples=20)
    assert result["reliance"]["roc_auc"]["only_lungs_fill"] == {"A": 0.60, "B": 0.62}
    assert result["reliance"]["verdict"] == {"A": "the decision rests largely outside the lungs", "B": "mixed"}
    assert result["trained_against"] == {"A": None, "B": penalty}
    shown = CliRunner().invoke(app, ["compare", str(run_a), str(run_b), "--bootstrap", "20"])
    assert shown.exit_code == 0 and "B was trained against gradcam" in shown.output.replace("\n", " ")
