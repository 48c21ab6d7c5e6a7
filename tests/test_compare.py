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
    (folder / "results.json").write_text(json.dumps({"metrics": metrics}))


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


def test_paired_differences_equal_an_explicit_cluster_bootstrap(two_runs):
    run_a, run_b, labels, a, b, share_a, share_b = two_runs
    result = compare_runs(run_a, run_b, n_resamples=200, seed=5)
    cls = result["classification"]
    assert cls["resampled_unit"] == "patient" and cls["n_images"] == 80
    assert cls["roc_auc"]["difference"] == pytest.approx(roc_auc_score(labels, b) - roc_auc_score(labels, a))
    acc = np.mean((b >= 0.55) == labels) - np.mean((a >= 0.45) == labels)
    assert cls["accuracy"]["difference"] == pytest.approx(acc)
    # The explicit loop: patients (2 consecutive films each, in path order) drawn with replacement.
    order = sorted(range(80), key=lambda i: f"/d/{['NORMAL', 'PNEUMONIA'][labels[i]]}/person{i // 2}_bacteria_{i}.jpeg")
    y, pa, pb = labels[order], a[order], b[order]
    patient = np.array([i // 2 for i in order])
    films = {p: np.flatnonzero(patient == p) for p in np.unique(patient)}
    ids = sorted(films, key=lambda p: f"person{p}")  # patients in the order of their ids as text (np.unique)
    rng, diffs = np.random.default_rng(5), []
    while len(diffs) < 200:
        drawn = rng.integers(0, len(ids), len(ids))
        idx = np.concatenate([films[ids[k]] for k in drawn])
        if y[idx].min() != y[idx].max():
            diffs.append(roc_auc_score(y[idx], pb[idx]) - roc_auc_score(y[idx], pa[idx]))
    assert cls["roc_auc"]["ci95"] == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
    att = result["attention"]["share_lungs"]
    for c, name in enumerate(("NORMAL", "PNEUMONIA")):
        keep = (labels == c) & np.isfinite(share_b)
        assert att[name]["n"] == keep.sum() and att[name]["B"] == pytest.approx(share_b[keep].mean())
        assert att[name]["wilcoxon_p"] == pytest.approx(wilcoxon(share_b[keep], share_a[keep]).pvalue)


def test_compare_command_and_its_errors(two_runs, tmp_path):
    run_a, run_b, *_ = two_runs
    result = CliRunner().invoke(
        app, ["compare", str(run_a), str(run_b), "--bootstrap", "50", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and (next((tmp_path / "out").glob("compare-*")) / "compare.json").is_file()
    missing = CliRunner().invoke(app, ["compare", str(run_a), str(tmp_path)])
    assert missing.exit_code == 2 and "no predictions.csv" in missing.output
