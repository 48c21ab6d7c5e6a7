"""evaluate with several checkpoints: the ensemble's probabilities are the mean of each member's own evaluation."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from pneumocam.cli.app import app

runner = CliRunner()


def _predictions(folder):
    with open(folder / "predictions.csv", newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def two_members(phantom_data, tmp_path_factory):
    """Two tiny models that differ in seed and in how they read a film (the second focuses on the body)."""
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    base = TrainConfig(
        data=str(phantom_data.images), mode="frozen", weights="none", image_size=32, epochs=1, batch_size=16,
        val_source="dataset", seed=1, use_cache=False,
    )  # fmt: skip
    runs = tmp_path_factory.mktemp("members")
    return [fit(base, runs_dir=runs) / "model.pt", fit(replace(base, seed=2, focus="body"), runs_dir=runs) / "model.pt"]


def test_the_ensemble_is_the_mean_of_each_members_own_evaluation(two_members, phantom_data, tmp_path):
    data = str(phantom_data.images)
    singles = []
    for i, member in enumerate(two_members):
        result = runner.invoke(
            app, ["evaluate", "--checkpoint", str(member), "--data", data, "--out", str(tmp_path / f"m{i}")]
        )
        assert result.exit_code == 0, result.output
        singles.append(_predictions(next((tmp_path / f"m{i}").iterdir())))
    args = ["evaluate", "--checkpoint", str(two_members[0]), "--checkpoint", str(two_members[1]), "--data", data]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "ens")])
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "ens").iterdir())
    ensemble = _predictions(folder)
    assert set(ensemble) == set(singles[0]) == set(singles[1]) and len(ensemble) == 16
    paths = sorted(ensemble)
    by_hand = np.array(
        [(float(singles[0][p]["prob_pneumonia"]) + float(singles[1][p]["prob_pneumonia"])) / 2 for p in paths]
    )
    got = np.array([float(ensemble[p]["prob_pneumonia"]) for p in paths])
    np.testing.assert_allclose(got, by_hand, rtol=0, atol=1e-12)
    assert [int(ensemble[p]["pred"]) for p in paths] == [int(v >= 0.5) for v in by_hand]
    labels = np.array([int(ensemble[p]["label"]) for p in paths])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["metrics"]["threshold_0.5"]["roc_auc"] == pytest.approx(roc_auc_score(labels, by_hand), abs=1e-12)
    members = metrics["ensemble"]["members"]
    for single, member in zip(singles, members):
        probs = np.array([float(single[p]["prob_pneumonia"]) for p in paths])
        assert member["roc_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert list(metrics["thresholds"]) == ["threshold_0.5"] and metrics["leakage"]["recorded"]
    assert "member 2: ROC-AUC" in result.output


def test_members_of_different_sizes_are_refused(two_members, phantom_data, tmp_path):
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    other = TrainConfig(
        data=str(phantom_data.images), mode="frozen", weights="none", image_size=48, epochs=1, batch_size=16,
        val_source="dataset", seed=1, use_cache=False,
    )  # fmt: skip
    bigger = fit(other, runs_dir=tmp_path / "runs") / "model.pt"
    args = ["evaluate", "--checkpoint", str(two_members[0]), "--checkpoint", str(bigger)]
    result = runner.invoke(app, [*args, "--data", str(phantom_data.images), "--out", str(tmp_path / "e")])
    assert result.exit_code != 0 and "different image sizes" in result.output
    assert not (tmp_path / "e").exists()  # refused before an evaluation folder was made
