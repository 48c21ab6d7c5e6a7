"""The experiment end to end on a tiny phantom set: every output exists, agrees with itself and with scipy."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from pneumocam.analysis.importance import importance_scores
from pneumocam.core.errors import PneumocamError
from pneumocam.core.outputs import is_complete
from pneumocam.core.runfiles import read_heatmaps_checked
from pneumocam.pipeline.experiment import run_experiment
from pneumocam.train.config import TrainConfig


def torch_upsample(maps, size):
    import torch

    return (
        torch.nn.functional.interpolate(
            torch.from_numpy(maps).unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False
        )
        .squeeze(1)
        .numpy()
    )


def lesion_root(run):
    return Path(json.loads((run / "results.json").read_text())["config"]["masks"]["lesion"])


@pytest.fixture
def run(tiny_run):
    return tiny_run


def test_run_folder_is_complete_with_every_output(run):
    assert is_complete(run)
    for name in (
        "config.json",
        "results.json",
        "stats.json",
        "importance.csv",
        "predictions.csv",
        "heatmaps.npz",
        "report.html",
        "report.md",
        "skipped.csv",
        "train/model.pt",
        "figures/heatmaps.png",
        "figures/roc.png",
        "figures/confusion.png",
    ):
        assert (run / name).is_file(), name


def test_report_has_every_section_and_embedded_images(run):
    html = (run / "report.html").read_text()
    for heading in (
        "Data and splits",
        "Training",
        "Classification metrics",
        "Grad-CAM heatmaps",
        "Importance scores and statistics",
        "Where the maps fall",
        "Conclusion and its limits",
        "SYNTHETIC DATA",
        "RANDOM INITIALISATION",
    ):
        assert heading in html, heading
    assert html.count("data:image/png;base64,") >= 6 and "<img" in html and "src='figures/" not in html
    md = (run / "report.md").read_text()
    assert "![" in md and "figures/heatmaps.png" in md


def test_scores_can_be_recomputed_from_heatmaps_npz(run):
    maps = read_heatmaps_checked(run / "heatmaps.npz", None)
    with open(run / "importance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == maps["paths"].tolist()
    recomputed = importance_scores(maps["maps"], int(maps["image_size"]))
    for name, values in recomputed.items():
        assert np.allclose([float(r[name]) for r in rows], values, rtol=1e-9, equal_nan=True), name
    # top10_mass by hand: upsample with torch's bilinear (half-pixel centres), sort, sum the top 10% of pixels.
    import torch

    up = (
        torch.nn.functional.interpolate(
            torch.from_numpy(maps["maps"]).unsqueeze(1), size=(64, 64), mode="bilinear", align_corners=False
        )
        .squeeze(1)
        .numpy()
        .reshape(len(rows), -1)
        .astype(np.float64)
    )
    up = np.maximum(up, 0)
    top = np.sort(up, axis=1)[:, -410:].sum(axis=1) / up.sum(axis=1)  # 10% of 4,096 pixels = 410
    assert np.allclose([float(r["top10_mass"]) for r in rows], top, rtol=1e-6)


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
    assert "lungs" not in gt  # lungs go to the region analysis
    # The lesion share recomputed by hand from heatmaps.npz and the mask files.
    from PIL import Image

    maps = read_heatmaps_checked(run / "heatmaps.npz", None)
    up = torch_upsample(maps["maps"], 64)
    shares = []
    for path, heat in zip(maps["paths"], up):
        mask_file = lesion_root(run) / "test" / "PNEUMONIA" / (Path(str(path)).stem + ".png")
        if "/PNEUMONIA/" in str(path) and mask_file.is_file():
            mask = np.asarray(Image.open(mask_file).convert("L").resize((64, 64))) > 191
            heat = np.maximum(heat.astype(np.float64), 0)
            if heat.sum() > 0:
                shares.append((heat * mask).sum() / heat.sum())
    assert gt["lesion"]["mean_mass_share"] == pytest.approx(np.mean(shares), rel=1e-6)
    attention = results["attention"]
    assert attention["lung_sources"] == {"mask": 16} and not attention["estimated"]
    shares = attention["mean_share_by_class"]["NORMAL"]
    assert sum(shares.values()) == pytest.approx(1.0)
    with open(run / "importance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    hits = [float(r["pointing_lungs"]) for r in rows if r["label"] == "PNEUMONIA" and r["pointing_lungs"] != "nan"]
    assert attention["pointing_lungs_by_class"]["PNEUMONIA"] == pytest.approx(sum(hits) / len(hits))
    m = results["metrics"]["threshold_0.5"]
    assert m["n"] == 16 and set(results["metrics"]) == {"threshold_0.5", "threshold_youden_val"}


def test_a_second_run_never_overwrites_the_first(tiny_run, tmp_path, tiny_config):
    # Two runs of one model into one folder, back to back (within the same second, where folder names would clash).
    config = tiny_config(checkpoint=str(tiny_run / "train" / "model.pt"), trust_images=0, n_draws=0)
    first = run_experiment(config, runs_dir=tmp_path)
    second = run_experiment(tiny_config(checkpoint=config.checkpoint, trust_images=0, n_draws=0), runs_dir=tmp_path)
    assert first != second and is_complete(first) and is_complete(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])
    assert not (second / "train").exists()  # --checkpoint skips training


def test_missing_eval_split_fails_before_anything_is_written(phantom_data, tmp_path, tiny_config):
    import shutil

    root = tmp_path / "no-test"
    shutil.copytree(phantom_data.images / "train", root / "train")
    config = tiny_config()
    config.train.data = str(root)
    with pytest.raises(PneumocamError, match="no 'test' split.*--eval-split val"):
        run_experiment(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_heldout_evaluation_uses_patients_never_trained_or_selected_on(phantom_data, tmp_path, tiny_config):
    from pneumocam.data import discover, split_holdout

    config = tiny_config(eval_split="heldout", masks={})
    run = run_experiment(config, runs_dir=tmp_path)
    results = json.loads((run / "results.json").read_text())
    _, held_out = split_holdout(discover(phantom_data.images), 0.15, seed=2)
    assert results["metrics"]["threshold_0.5"]["n"] == len(held_out) > 0
    with open(run / "predictions.csv", newline="") as f:
        evaluated = {r["path"] for r in csv.DictReader(f)}
    assert evaluated == {s.path for s in held_out}
    assert results["provenance"]["training_data"]["validation"]["holdout_fraction"] == 0.15


def test_every_file_the_readme_lists_exists_in_a_run_folder(run):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## What a run writes") :]
    section = section[: section.index("\n\n", section.index("`RUNS/"))]
    listed = [name for name in re.findall(r"`([\w./*-]+\.(?:json|csv|npz|html|md|png|pt))`", section)]
    assert {"metrics.json", "config.json", "results.json", "leakage.csv"} <= set(listed)
    for name in listed:
        matches = list(run.glob(name)) + list((run / "train").glob(name))
        assert matches, name
    metrics = json.loads((run / "metrics.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert metrics["metrics"] == results["metrics"] and metrics["leakage"] == results["leakage"]


def test_eval_split_val_is_refused_when_that_val_selects_the_model(phantom_data, tmp_path, tiny_config):
    config = tiny_config(eval_split="val")  # val_source dataset: the dataset's val chooses epoch and threshold
    with pytest.raises(PneumocamError, match="would not be held-out"):
        run_experiment(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_eval_split_val_with_a_carved_validation_is_held_out_and_says_so(phantom_data, tmp_path, tiny_config):
    config = tiny_config(eval_split="val", masks={}, trust_images=0)
    config.train.val_source = "carved"
    run = run_experiment(config, runs_dir=tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert (
        results["leakage"]["n_images_seen_in_selection"] == 0 and results["leakage"]["n_images_seen_in_training"] == 0
    )
    assert results["metrics"]["threshold_0.5"]["n"] == 12
    assert "never chosen on the evaluated split" in (run / "report.md").read_text()


def test_checkpoint_evaluated_on_its_own_validation_split_says_the_threshold_saw_it(
    run, phantom_data, tmp_path, tiny_config
):
    config = tiny_config(eval_split="val", checkpoint=str(run / "train" / "model.pt"), masks={}, trust_images=0)
    second = run_experiment(config, runs_dir=tmp_path)
    results = json.loads((second / "results.json").read_text())
    assert results["leakage"]["n_images_seen_in_selection"] == 12
    md = (second / "report.md").read_text()
    assert "never chosen on the evaluated split" not in md
    assert "WAS chosen on evaluated images" in md and "LEAKAGE" in md
    config.strict = True
    with pytest.raises(PneumocamError, match="LEAKAGE"):
        run_experiment(config, runs_dir=tmp_path / "strict")
    assert not (tmp_path / "strict").exists()


def test_heldout_with_a_checkpoint_follows_the_checkpoints_plan(phantom_data, tmp_path, tiny_config):
    from pneumocam.data import discover, split_holdout
    from pneumocam.train.fit import fit

    trained = fit(
        TrainConfig(
            data=str(phantom_data.images),
            mode="frozen",
            weights="none",
            image_size=32,
            epochs=1,
            batch_size=16,
            val_source="dataset",
            seed=3,
            holdout_fraction=0.3,
            use_cache=False,
        ),
        runs_dir=tmp_path,
    )
    # The command line's defaults (fraction 0.15, seed 0) differ from the checkpoint's (0.3, seed 3).
    config = tiny_config(eval_split="heldout", checkpoint=str(trained / "model.pt"), masks={}, trust_images=0)
    config.train.holdout_fraction, config.train.seed = 0.15, 0
    run = run_experiment(config, runs_dir=tmp_path / "runs")
    with open(run / "predictions.csv", newline="") as f:
        evaluated = {r["path"] for r in csv.DictReader(f)}
    _, held_out = split_holdout(discover(phantom_data.images), 0.3, 3)
    assert evaluated == {s.path for s in held_out} and len(held_out) == round(0.3 * 48)
    _, default_draw = split_holdout(discover(phantom_data.images), 0.15, 0)
    assert evaluated != {s.path for s in default_draw}
    leak = json.loads((run / "results.json").read_text())["leakage"]
    assert leak["n_images_seen_in_training"] == 0 and leak["n_patients_shared_with_training"] == 0


def test_heldout_with_a_checkpoint_without_a_held_out_part_is_a_clear_error(run, phantom_data, tmp_path, tiny_config):
    config = tiny_config(eval_split="heldout", checkpoint=str(run / "train" / "model.pt"), masks={})
    with pytest.raises(PneumocamError, match="trained without a held-out part"):
        run_experiment(config, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_stats_command_reads_a_runs_importance_csv_with_nan_rows(run, tmp_path):
    """The README's example, on the rows a run writes; NaN rows (empty maps) are dropped and counted."""
    from scipy import stats as st
    from typer.testing import CliRunner

    from pneumocam.cli.app import app

    with open(run / "importance.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), reader.fieldnames
    rows[0]["share_lungs"] = rows[-1]["share_lungs"] = "nan"  # as a run writes them for an empty map
    dropped = {
        "NORMAL": sum(r["label"] == "NORMAL" for r in (rows[0], rows[-1])),
        "PNEUMONIA": sum(r["label"] == "PNEUMONIA" for r in (rows[0], rows[-1])),
    }
    with open(tmp_path / "importance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(
        app,
        [
            "stats",
            str(tmp_path / "importance.csv"),
            "--score",
            "share_lungs",
            "--n-per-class",
            "all",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(next((tmp_path / "out").glob("stats-*/stats.json")).read_text())["share_lungs"]
    assert written["dropped_nan_rows"] == dropped
    kept = [r for r in rows if r["share_lungs"] != "nan"]
    normal = [float(r["share_lungs"]) for r in kept if r["label"] == "NORMAL"]
    pneumonia = [float(r["share_lungs"]) for r in kept if r["label"] == "PNEUMONIA"]
    assert written["sample"]["groups"]["NORMAL"]["n"] == len(normal) == 8 - dropped["NORMAL"]
    assert written["sample"]["welch"]["p"] == pytest.approx(
        st.ttest_ind(pneumonia, normal, equal_var=False).pvalue, rel=1e-9
    )


def test_stats_command_reproduces_the_runs_stats_json(run, tmp_path):
    """One layout: `pneumocam stats` on a run's importance.csv gives the run's stats.json entry, seed for seed."""
    from typer.testing import CliRunner

    from pneumocam.cli.app import app

    run_stats = json.loads((run / "stats.json").read_text())
    config = json.loads((run / "config.json").read_text())["experiment"]
    for score in ("mean_raw", "share_lungs"):
        result = CliRunner().invoke(
            app,
            [
                "stats",
                str(run / "importance.csv"),
                "--score",
                score,
                "--n-per-class",
                str(config["n_per_class"]),
                "--n-draws",
                str(config["n_draws"]),
                "--seed",
                str(config["train"]["seed"]),
                "--out",
                str(tmp_path / score),
            ],
        )
        assert result.exit_code == 0, result.output
        written = json.loads(next((tmp_path / score).glob("stats-*/stats.json")).read_text())[score]
        ours = {k: v for k, v in written.items() if k != "source"}
        theirs = {k: v for k, v in run_stats[score].items() if k != "description"}
        assert ours == theirs, score


def test_explain_reads_everything_from_a_run_folder(run, tmp_path):
    """explain --run: the model, data, split and lung masks come from the run folder (RunFolder)."""
    from typer.testing import CliRunner

    from pneumocam.cli.app import app

    result = CliRunner().invoke(app, ["explain", "--run", str(run), "--out", str(tmp_path), "--trust-images", "0"])
    assert result.exit_code == 0, result.output
    explained = next(tmp_path.glob("run-*"))
    config = json.loads((explained / "config.json").read_text())["experiment"]
    original = json.loads((run / "config.json").read_text())["experiment"]
    assert config["checkpoint"] == str(run / "train" / "model.pt") and config["eval_split"] == original["eval_split"]
    assert (
        config["masks"]["lungs"] == original["masks"]["lungs"] and config["train"]["seed"] == original["train"]["seed"]
    )
    with open(explained / "predictions.csv") as a, open(run / "predictions.csv") as b:
        assert a.read() == b.read()  # the same model on the same films


def test_predictions_csv_reproduces_metrics_json_with_sklearn(tiny_run):
    """What a reader recomputes from the run's files: ROC-AUC and the accuracy at the named decision threshold."""

    from sklearn.metrics import accuracy_score, roc_auc_score

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    with open(tiny_run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [int(r["label"]) for r in rows]
    probs = [float(r["prob_pneumonia"]) for r in rows]
    decision = metrics["decision"]
    reported = metrics["metrics"][decision["metrics_key"]]
    assert roc_auc_score(labels, probs) == pytest.approx(reported["roc_auc"], abs=1e-9)
    assert accuracy_score(labels, [int(r["pred"]) for r in rows]) == pytest.approx(reported["accuracy"], abs=1e-9)
    assert all(float(r["threshold"]) == decision["threshold"] for r in rows)
    assert [int(r["pred"]) for r in rows] == [int(p >= decision["threshold"]) for p in probs]
    assert [int(r["pred_at_0.5"]) for r in rows] == [int(p >= 0.5) for p in probs]
    at_half = metrics["metrics"]["threshold_0.5"]["accuracy"]
    assert accuracy_score(labels, [int(r["pred_at_0.5"]) for r in rows]) == pytest.approx(at_half, abs=1e-9)


@pytest.mark.parametrize("include_ood", [False, True])
def test_films_the_guard_flagged_are_left_out_of_the_statistics_unless_asked(tiny_config, include_ood):
    """compare_classes on hand-made scores: the flagged films' values are far off, so whether they were used shows
    in the group means; the means are checked against numpy on the rows kept by hand."""
    from types import SimpleNamespace

    from pneumocam.pipeline.experiment import compare_classes

    labels = np.array([0] * 6 + [1] * 6)
    passed = np.array([True, True, True, True, False, False, True, True, True, True, True, False])
    score = np.array([1.0, 1.2, 0.9, 1.1, 50.0, 60.0, 2.0, 2.2, 1.9, 2.1, 2.0, 90.0])
    explained = SimpleNamespace(loaded=SimpleNamespace(labels=labels), in_distribution=passed)
    scored = SimpleNamespace(scores={"mean_raw": score})
    cfg = tiny_config(include_ood=include_ood, n_per_class=None, n_draws=0)
    statistics, notes = compare_classes(cfg, explained, scored)
    keep = np.ones(12, dtype=bool) if include_ood else passed
    groups = statistics["mean_raw"]["sample"]["groups"]
    assert groups["NORMAL"]["n"] == int((keep & (labels == 0)).sum()) == (6 if include_ood else 4)
    assert groups["PNEUMONIA"]["n"] == int((keep & (labels == 1)).sum()) == (6 if include_ood else 5)
    assert groups["NORMAL"]["mean"] == pytest.approx(score[keep & (labels == 0)].mean())
    assert groups["PNEUMONIA"]["mean"] == pytest.approx(score[keep & (labels == 1)].mean())
    assert notes["out_of_distribution_left_out"] == (0 if include_ood else 3)


def _with_threshold(checkpoint: Path, out: Path, threshold: float) -> Path:
    """A copy of a model.pt whose recorded validation-chosen threshold is `threshold`."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["metadata"]["thresholds"] = dict(saved["metadata"].get("thresholds") or {}, youden_val=threshold)
    torch.save(saved, out)
    return out


def test_every_pred_column_is_decided_at_the_models_threshold_and_the_viewer_names_it(
    tiny_run, tmp_path, tiny_config, tiny_data
):
    from fastapi.testclient import TestClient

    from pneumocam.serve.app import create_app

    with open(tiny_run / "predictions.csv", newline="") as f:
        probs = np.sort([float(r["prob_pneumonia"]) for r in csv.DictReader(f)])
    # a threshold between two of the films' probabilities, as far from 0.5 as they allow: the films between it and
    # 0.5 are decided differently at the two thresholds
    cuts = (probs[1:] + probs[:-1]) / 2
    threshold = float(cuts[np.argmax(np.abs(cuts - 0.5))])
    between = int(((probs >= min(threshold, 0.5)) & (probs < max(threshold, 0.5))).sum())
    assert threshold != 0.5 and between >= 1  # the fixture separates the model's threshold from 0.5

    checkpoint = _with_threshold(tiny_run / "train" / "model.pt", tmp_path / "model.pt", threshold)
    runs = tmp_path / "runs"
    run = run_experiment(
        tiny_config(checkpoint=str(checkpoint), masks={}, trust_images=0, reliance=False), runs_dir=runs
    )
    with open(run / "predictions.csv", newline="") as f:
        predictions = {r["path"]: r for r in csv.DictReader(f)}
    with open(run / "importance.csv", newline="") as f:
        importance = {r["path"]: r for r in csv.DictReader(f)}
    maps = read_heatmaps_checked(run / "heatmaps.npz", None)
    by_hand = {p: int(float(r["prob_pneumonia"]) >= threshold) for p, r in predictions.items()}
    assert {p: int(r["pred"]) for p, r in predictions.items()} == by_hand
    assert {p: ("NORMAL", "PNEUMONIA").index(r["pred"]) for p, r in importance.items()} == by_hand
    assert dict(zip(maps["paths"].tolist(), maps["preds"].tolist())) == by_hand
    assert sum(int(r["pred"]) != int(r["pred_at_0.5"]) for r in predictions.values()) == between
    assert {float(r["threshold"]) for r in predictions.values()} == {threshold}
    assert {float(r["threshold"]) for r in importance.values()} == {threshold} == {float(maps["threshold"])}
    results = json.loads((run / "results.json").read_text())
    assert results["decision"]["threshold"] == threshold
    assert results["metrics"]["threshold_youden_val"]["threshold"] == threshold

    app = create_app(checkpoint, runs=runs, device="cpu", data_roots=(tiny_data,))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        film = client.get(f"/api/runs/{run.name}/film", params={"path": next(iter(predictions))}).json()
    assert film["case"]["threshold"] == threshold and film["case"]["threshold_key"] == "threshold_youden_val"
