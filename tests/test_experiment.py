"""The experiment end to end on a tiny phantom set: every output exists, agrees with itself and with scipy."""

import csv
import json

import numpy as np
import pytest
from scipy import stats as st

from pneumocam.cam import load_heatmaps
from pneumocam.errors import PneumocamError
from pneumocam.experiment import ExperimentConfig, run_experiment
from pneumocam.importance import importance_scores
from pneumocam.outputs import is_complete
from pneumocam.train import TrainConfig


def tiny_config(phantom_data, **overrides):
    train = TrainConfig(data=str(phantom_data.images), mode="frozen", weights="none", image_size=64, epochs=2, batch_size=16,
                        val_source="dataset", seed=2, use_cache=False)
    values = dict(train=train, eval_split="test", n_per_class=5, n_draws=50, bootstrap=50, grid_per_class=2,
                  masks={"lesion": str(phantom_data.lesion_masks), "lungs": str(phantom_data.lung_masks)}, synthetic=True)
    return ExperimentConfig(**(values | overrides))


@pytest.fixture(scope="module")
def run(phantom_data, tmp_path_factory):
    return run_experiment(tiny_config(phantom_data), runs_dir=tmp_path_factory.mktemp("runs"))


def test_run_folder_is_complete_with_every_output(run):
    assert is_complete(run)
    for name in ("config.json", "results.json", "stats.json", "importance.csv", "predictions.csv", "heatmaps.npz", "report.html",
                 "report.md", "skipped.csv", "train/model.pt", "figures/heatmaps.png", "figures/roc.png", "figures/confusion.png"):
        assert (run / name).is_file(), name


def test_report_has_every_section_and_embedded_images(run):
    html = (run / "report.html").read_text()
    for heading in ("Data and splits", "Training", "Classification metrics", "Grad-CAM heatmaps", "Importance scores and statistics",
                    "Where the maps fall", "Conclusion and its limits", "SYNTHETIC DATA", "RANDOM INITIALISATION"):
        assert heading in html, heading
    assert html.count("data:image/png;base64,") >= 6 and "<img" in html and "src='figures/" not in html
    md = (run / "report.md").read_text()
    assert "![" in md and "figures/heatmaps.png" in md


def test_scores_can_be_recomputed_from_heatmaps_npz(run):
    maps = load_heatmaps(run / "heatmaps.npz")
    with open(run / "importance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == maps["paths"].tolist()
    recomputed = importance_scores(maps["maps"], int(maps["image_size"]))
    for name, values in recomputed.items():
        assert np.allclose([float(r[name]) for r in rows], values, rtol=1e-9, equal_nan=True), name
    uniform_share = np.array([float(r["top10_mass"]) for r in rows])
    assert np.all((uniform_share >= 0.1 - 1e-6) & (uniform_share <= 1))


def test_statistics_in_stats_json_match_scipy_on_importance_csv(run):
    stats = json.loads((run / "stats.json").read_text())
    with open(run / "importance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([r["label"] for r in rows])
    values = np.array([float(r["mean_raw"]) for r in rows])
    all_images = stats["mean_raw"]["all_images"]
    welch = st.ttest_ind(values[labels == "PNEUMONIA"], values[labels == "NORMAL"], equal_var=False)
    assert all_images["welch"]["p"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert stats["mean_raw"]["sample"]["groups"]["NORMAL"]["n"] == 5
    assert len(stats["mean_raw"]["resampled"]["p_values"]) == 50


def test_results_json_says_where_numbers_came_from(run):
    results = json.loads((run / "results.json").read_text())
    prov = results["provenance"]
    assert prov["weights"]["source"] == "none" and prov["seed"] == 2 and prov["synthetic_data"]
    assert prov["eval_split"] == "test" and len(prov["eval_fingerprint"]) == 16 and "torch" in prov["versions"]
    gt = results["ground_truth"]
    assert gt["lesion"]["images_with_mask"] == 8  # the PNEUMONIA test phantoms
    assert 0 <= gt["lesion"]["mean_mass_share"] <= 1 and "lungs" not in gt  # lungs go to the region analysis
    attention = results["attention"]
    assert attention["lung_sources"] == {"mask": 16} and not attention["estimated"]
    shares = attention["mean_share_by_class"]["NORMAL"]
    assert sum(shares.values()) == pytest.approx(1.0) and 0 <= attention["pointing_lungs_by_class"]["PNEUMONIA"] <= 1
    m = results["metrics"]["threshold_0.5"]
    assert m["n"] == 16 and set(results["metrics"]) == {"threshold_0.5", "threshold_youden_val"}


def test_a_second_run_never_overwrites_the_first(phantom_data, tmp_path):
    config = tiny_config(phantom_data, checkpoint=None)
    first = run_experiment(config, runs_dir=tmp_path)
    second = run_experiment(tiny_config(phantom_data, checkpoint=str(first / "train" / "model.pt")), runs_dir=tmp_path)
    assert first != second and is_complete(first) and is_complete(second)
    assert not (second / "train").exists()  # --checkpoint skips training


def test_missing_eval_split_fails_before_anything_is_written(phantom_data, tmp_path):
    import shutil

    root = tmp_path / "no-test"
    shutil.copytree(phantom_data.images / "train", root / "train")
    config = tiny_config(phantom_data)
    config.train.data = str(root)
    with pytest.raises(PneumocamError, match="no 'test' split.*--eval-split val"):
        run_experiment(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_heldout_evaluation_uses_patients_never_trained_or_selected_on(phantom_data, tmp_path):
    from pneumocam.data import discover, split_holdout

    config = tiny_config(phantom_data, eval_split="heldout", masks={})
    run = run_experiment(config, runs_dir=tmp_path)
    results = json.loads((run / "results.json").read_text())
    _, held_out = split_holdout(discover(phantom_data.images), 0.15, seed=2)
    assert results["metrics"]["threshold_0.5"]["n"] == len(held_out) > 0
    with open(run / "predictions.csv", newline="") as f:
        evaluated = {r["path"] for r in csv.DictReader(f)}
    assert evaluated == {s.path for s in held_out}
    assert results["provenance"]["training_data"]["validation"]["holdout_fraction"] == 0.15
