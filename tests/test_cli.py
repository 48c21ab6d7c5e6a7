"""The command line: clear errors with exit status 2, never a traceback; each command's outputs."""

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from pneumocam.cli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_data_reports_counts_skips_and_validation(phantom_data, tmp_path):
    result = invoke("data", phantom_data.images, "--image-size", 32, "--skipped-csv", tmp_path / "skipped.csv")
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "validation: carved" in result.output  # the phantom val holds 12 < 100 images
    assert (tmp_path / "skipped.csv").read_text().startswith("path,reason")


@pytest.mark.parametrize(
    "args, message",
    [
        (("data", "/nonexistent/folder"), "dataset folder not found"),
        (("train", "--data", "/nonexistent", "--weights", "none"), "dataset folder not found"),
        (("evaluate", "--checkpoint", "/nonexistent.pt", "--data", "/x"), "checkpoint not found"),
        (("stats", "/nonexistent.csv", "--score", "s"), "cannot read"),
        (("run", "--data", "/nonexistent", "--weights", "none"), "dataset folder not found"),
        (("train", "--resume", "/tmp"), "not a pneumocam training folder"),
    ],
)
def test_bad_input_is_one_clear_error(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", ["predict", "serve", "evaluate", "train"])
def test_an_empty_checkpoint_is_one_clear_error(command, phantom_data, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    film = next((phantom_data.images / "test").rglob("*.png"))
    args = {
        "predict": ("predict", "--checkpoint", empty, "--out", tmp_path / "p", film),
        "serve": ("serve", "--checkpoint", empty, "--port", 1),
        "evaluate": ("evaluate", "--checkpoint", empty, "--data", phantom_data.images, "--out", tmp_path / "e"),
        "train": ("train", "--data", phantom_data.images, "--weights", empty, "--out", tmp_path / "t"),
    }[command]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "the file is empty (0 bytes)" in result.output and "Traceback" not in result.output


def test_train_with_unavailable_imagenet_weights_names_the_fix(phantom_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMOCAM_OFFLINE", "1")
    result = invoke("train", "--data", phantom_data.images, "--out", tmp_path / "runs", "--weights", "imagenet")
    assert result.exit_code == 2 and "--weights none" in result.output.replace("\n", " ")
    assert not (tmp_path / "runs").exists()


def test_stats_command_prints_the_original_layout_and_writes_stats_json(tmp_path, rng):
    rows = (
        ["path,label,score"]
        + [f"n{i},NORMAL,{v}" for i, v in enumerate(rng.normal(0, 1, 50))]
        + [f"p{i},PNEUMONIA,{v}" for i, v in enumerate(rng.normal(1, 1, 60))]
    )
    (tmp_path / "scores.csv").write_text("\n".join(rows) + "\n")
    result = invoke(
        "stats",
        tmp_path / "scores.csv",
        "--score",
        "score",
        "--n-per-class",
        30,
        "--seed",
        1,
        "--n-draws",
        200,
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    for heading in ("Summary Statistics", "Statistical Test Results", "Effect Size", "random 30 vs 30 draws"):
        assert heading in result.output
    written = json.loads(next((tmp_path / "out").glob("stats-*/stats.json")).read_text())["score"]
    assert written["sample"]["groups"]["NORMAL"]["n"] == 30 and written["source"]["seed"] == 1
    assert len(written["resampled"]["p_values"]) == 200 and written["all_images"]["groups"]["PNEUMONIA"]["n"] == 60
    bad = invoke("stats", tmp_path / "scores.csv", "--score", "missing")
    assert bad.exit_code == 2 and "lacks column(s) missing" in bad.output


def test_a_runs_config_json_fed_back_reproduces_the_run(phantom_data, tmp_path):
    """--config: a run's config.json as defaults gives the same settings, hence the same metrics and statistics."""
    args = [
        "run",
        "--data",
        phantom_data.images,
        "--weights",
        "none",
        "--image-size",
        32,
        "--epochs",
        1,
        "--batch-size",
        16,
        "--val-source",
        "dataset",
        "--seed",
        4,
        "--n-per-class",
        5,
        "--n-draws",
        20,
        "--bootstrap",
        30,
        "--trust-images",
        0,
        "--method",
        "hirescam",
    ]
    first = invoke(*args, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    run_a = next((tmp_path / "a").glob("run-*"))
    again = invoke("run", "--config", run_a / "config.json", "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    run_b = next((tmp_path / "b").glob("run-*"))
    config_a = json.loads((run_a / "config.json").read_text())["experiment"]
    config_b = json.loads((run_b / "config.json").read_text())["experiment"]
    assert {k: v for k, v in config_a.items() if k != "command"} == {
        k: v for k, v in config_b.items() if k != "command"
    }
    metrics = [json.loads((r / "metrics.json").read_text())["metrics"] for r in (run_a, run_b)]
    assert metrics[0] == metrics[1] and metrics[0]["threshold_0.5"]["n"] == 16
    stats = [json.loads((r / "stats.json").read_text()) for r in (run_a, run_b)]
    assert stats[0] == stats[1]
    # The command line still wins over the file.
    other = invoke("run", "--config", run_a / "config.json", "--out", tmp_path / "c", "--seed", 5, "--trust-images", 0)
    assert other.exit_code == 0, other.output
    assert json.loads(next((tmp_path / "c").glob("run-*/config.json")).read_text())["experiment"]["train"]["seed"] == 5


def test_bad_config_file_is_a_clear_error(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    result = invoke("run", "--config", tmp_path / "c.json")
    assert result.exit_code == 2 and "not valid JSON" in result.output
    (tmp_path / "c.yaml").write_text("data: [unclosed")
    result = invoke("train", "--config", tmp_path / "c.yaml")
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_options_are_declared_once_and_choices_are_validated():
    result = invoke("run", "--data", "/x", "--mode", "sideways")
    assert result.exit_code == 2 and "sideways" in result.output  # typer validates Enum choices and names them
    assert all(choice in result.output for choice in ("frozen", "partial", "full"))
    from pneumocam.cli.options import TRAINING

    commands = typer.main.get_command(app).commands
    for command in ("run", "train"):
        params = {p.name: p for p in commands[command].params}
        assert set(TRAINING) <= set(params), command
    assert commands["run"].params != [] and "lung_masks" in {p.name for p in commands["explain"].params}


def test_each_default_and_choice_set_is_the_librarys_own():
    """The command line's defaults are TrainConfig's and ExperimentConfig's, and its choices the library's tuples:
    a default changed in the dataclass changes the CLI, with no second place to forget."""
    from dataclasses import fields

    from pneumocam.explain.cam import METHODS
    from pneumocam.pipeline.config import DEFAULT_HOLDOUT_FRACTION, ExperimentConfig
    from pneumocam.train.config import CHOICES, TrainConfig

    params = {p.name: p for p in typer.main.get_command(app).commands["run"].params}
    library = {f.name: f.default for f in fields(TrainConfig)} | {
        f.name: f.default for f in fields(ExperimentConfig) if f.name != "train"
    }
    compared = 0
    for name, param in params.items():
        if name in library and name not in (
            "data",
            "checkpoint",
            "shard",
            "eval_split",
            "lung_model",
            "holdout_fraction",
        ):
            default = param.default.value if hasattr(param.default, "value") else param.default
            expected = library[name]
            assert (str(default) if name == "n_per_class" else default) == (
                str(expected) if name == "n_per_class" else expected
            ), name
            compared += 1
    assert compared >= 30  # every training option and the explaining / statistics ones were compared
    assert params["weights"].default == "imagenet" and params["holdout_fraction"].default == DEFAULT_HOLDOUT_FRACTION
    from pneumocam.cli.options import EXPLAINING, TRAINING

    for name, allowed in CHOICES.items():
        assert tuple(member.value for member in TRAINING[name][0]) == allowed, name
    assert tuple(member.value for member in EXPLAINING["method"][0]) == METHODS


def test_an_experiment_config_checks_itself_so_a_config_file_value_is_checked_too(tmp_path):
    from pneumocam.core.errors import SettingError
    from pneumocam.pipeline.config import ExperimentConfig
    from pneumocam.train.config import TrainConfig

    with pytest.raises(SettingError, match="method"):
        ExperimentConfig(train=TrainConfig(data="x", weights="none"), method="nonsense")
    with pytest.raises(SettingError, match="eval_split"):
        ExperimentConfig(train=TrainConfig(data="x", weights="none"), eval_split="tset")
    heldout = ExperimentConfig(train=TrainConfig(data="x", weights="none"), eval_split="heldout")
    assert heldout.train.holdout_fraction == 0.15  # training sets the held-out patients aside by itself
    (tmp_path / "c.json").write_text(json.dumps({"data": str(tmp_path), "method": "nonsense", "weights": "none"}))
    result = invoke("run", "--config", tmp_path / "c.json", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "method" in result.output and "nonsense" in result.output


def test_library_errors_name_settings_and_the_cli_shows_options(phantom_data, tmp_path):
    from pneumocam.core.errors import SettingError
    from pneumocam.train.config import TrainConfig

    with pytest.raises(SettingError) as caught:
        TrainConfig(data="x", weighted_sampler=True, class_weights="balanced")
    assert str(caught.value).startswith("class_weights balanced together with the weighted sampler")
    assert "--" not in str(caught.value)
    result = invoke(
        "train",
        "--data",
        phantom_data.images,
        "--out",
        tmp_path,
        "--weights",
        "none",
        "--weighted-sampler",
        "--class-weights",
        "balanced",
    )
    assert result.exit_code == 2 and "--class-weights balanced together with the weighted sampler" in result.output


def test_a_recipe_sets_defaults_that_typed_options_override(phantom_data, tmp_path):
    result = invoke(
        "train",
        "--data",
        phantom_data.images,
        "--out",
        tmp_path,
        "--recipe",
        "scratch",
        "--epochs",
        2,
        "--size-schedule",
        "32:1,64:1",
        "--image-size",
        64,
        "--val-source",
        "dataset",
        "--max-per-class",
        6,
    )
    assert result.exit_code == 0, result.output
    train = json.loads(next(tmp_path.glob("train-*/config.json")).read_text())["train"]
    from pneumocam.train.recipes import RECIPES

    for key in ("weights", "mode", "augment", "lr", "select_by", "calibration", "batch_size"):
        assert train[key] == RECIPES["scratch"][key], key  # from the recipe
    assert (train["recipe"], train["epochs"], train["size_schedule"], train["image_size"]) == (
        "scratch",
        2,
        "32:1,64:1",
        64,
    )
    unknown = invoke("train", "--data", phantom_data.images, "--recipe", "fancy")
    assert unknown.exit_code == 2 and "fancy" in unknown.output


def test_the_focused_recipe_needs_a_trained_model_and_then_continues_it(phantom_data, tiny_checkpoint, tmp_path):
    bare = invoke("train", "--data", phantom_data.images, "--out", tmp_path / "bare", "--recipe", "focused")
    assert bare.exit_code == 2 and "--weights RUN/train/model.pt" in bare.output
    assert not (tmp_path / "bare").exists() or not any((tmp_path / "bare").iterdir())
    result = invoke(
        "train", "--data", phantom_data.images, "--out", tmp_path / "runs", "--recipe", "focused",
        "--weights", tiny_checkpoint / "model.pt", "--epochs", 1, "--image-size", 32, "--batch-size", 16,
        "--val-source", "dataset", "--attention-masks", phantom_data.lung_masks,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "runs").glob("train-*"))
    train = json.loads((folder / "config.json").read_text())["train"]
    assert (train["focus"], train["attention_penalty"], train["mode"], train["lr"]) == ("body", 1.0, "full", 3e-4)
    # The penalty ran, on the lung masks run defaults to: the same run without it trains other weights.
    unpenalised = invoke(
        "train", "--data", phantom_data.images, "--out", tmp_path / "plain", "--recipe", "focused",
        "--weights", tiny_checkpoint / "model.pt", "--epochs", 1, "--image-size", 32, "--batch-size", 16,
        "--val-source", "dataset", "--attention-penalty", 0,
    )  # fmt: skip
    assert unpenalised.exit_code == 0, unpenalised.output
    from pneumocam.model.network import load_checkpoint

    with_penalty, _ = load_checkpoint(folder / "model.pt")
    without, _ = load_checkpoint(next((tmp_path / "plain").glob("train-*")) / "model.pt")
    assert not torch.equal(with_penalty.conv1.weight, without.conv1.weight)
    assert "train_outside_lungs_share" in json.loads((folder / "history.json").read_text())[0]


def test_lungs_fit_and_dice_score_as_sklearns_f1_on_the_masks(phantom_data, tmp_path):
    """`lungs dice` prints the mean Dice of an estimate against the reference masks, 127 left out: recomputed here as
    scikit-learn's F1 per film on the non-ignore pixels. `lungs fit` writes a model that `dice` then scores, on
    films of patients it was not trained on, and it never overwrites a file."""
    import re

    import numpy as np
    from sklearn.metrics import f1_score

    from pneumocam.anatomy.lungs import classical_lungs
    from pneumocam.data import discover
    from pneumocam.data.masks import mask_path
    from pneumocam.data.readers import read_grayscale, read_resized, resize_square

    images, masks = phantom_data.images, phantom_data.lung_masks
    scored = invoke("lungs", "dice", "--data", images, "--masks", masks, "--split", "test", "--image-size", 64)
    assert scored.exit_code == 0, scored.output
    printed = re.search(r"on (\d+) 'test' images.*mean Dice ([0-9.]+)", scored.output.replace("\n", " "))
    expected = []
    for sample in discover(images).split("test"):
        reference = resize_square(read_grayscale(mask_path(masks, sample)), 64)
        keep = reference != 127
        estimate = classical_lungs(read_resized(sample.path, 64))
        expected.append(f1_score((reference == 255)[keep], estimate[keep]))
    assert int(printed.group(1)) == len(expected) == 16
    assert float(printed.group(2)) == pytest.approx(np.mean(expected), abs=5e-4)

    model = tmp_path / "lungs.pt"
    fitted = invoke(
        "lungs", "fit", "--data", images, "--masks", masks, "--out", model, "--epochs", 2, "--image-size", 64
    )
    assert fitted.exit_code == 0 and model.is_file(), fitted.output
    again = invoke(
        "lungs", "fit", "--data", images, "--masks", masks, "--out", model, "--epochs", 1, "--image-size", 64
    )
    assert again.exit_code == 2 and "exists" in again.output
    learned = invoke("lungs", "dice", "--data", images, "--masks", masks, "--split", "test", "--model", model)
    assert learned.exit_code == 0 and "learned model" in learned.output, learned.output
    on_its_own = invoke("lungs", "dice", "--data", images, "--masks", masks, "--split", "train", "--model", model)
    assert on_its_own.exit_code == 2 and "trained on" in on_its_own.output


def test_version_is_the_installed_distributions():
    import importlib.metadata

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pneumocam {importlib.metadata.version('pneumocam')}"
