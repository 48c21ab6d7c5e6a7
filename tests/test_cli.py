"""The command line: clear errors with exit status 2, never a traceback; each command's outputs."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pneumocam.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_data_reports_counts_skips_and_validation(phantom_data, tmp_path):
    result = invoke("data", phantom_data.images, "--image-size", 32, "--skipped-csv", tmp_path / "skipped.csv")
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "validation: carved" in result.output  # the phantom val holds 12 < 100 images
    assert (tmp_path / "skipped.csv").read_text().startswith("path,reason")


@pytest.mark.parametrize("args, message", [
    (("data", "/nonexistent/folder"), "dataset folder not found"),
    (("train", "--data", "/nonexistent", "--weights", "none"), "dataset folder not found"),
    (("evaluate", "--checkpoint", "/nonexistent.pt", "--data", "/x"), "checkpoint not found"),
    (("stats", "/nonexistent.csv", "--score", "s"), "cannot read"),
    (("run", "--data", "/nonexistent", "--weights", "none"), "dataset folder not found"),
    (("train", "--resume", "/tmp"), "not a pneumocam training folder"),
])
def test_bad_input_is_one_clear_error(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_train_with_unavailable_imagenet_weights_names_the_fix(phantom_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMOCAM_OFFLINE", "1")
    result = invoke("train", "--data", phantom_data.images, "--out", tmp_path / "runs", "--weights", "imagenet")
    assert result.exit_code == 2 and "--weights none" in result.output.replace("\n", " ")
    assert not (tmp_path / "runs").exists()


def test_stats_command_prints_the_original_layout_and_writes_stats_json(tmp_path, rng):
    rows = ["path,label,score"] + [f"n{i},NORMAL,{v}" for i, v in enumerate(rng.normal(0, 1, 50))] + \
           [f"p{i},PNEUMONIA,{v}" for i, v in enumerate(rng.normal(1, 1, 60))]
    (tmp_path / "scores.csv").write_text("\n".join(rows) + "\n")
    result = invoke("stats", tmp_path / "scores.csv", "--score", "score", "--n-per-class", 30, "--seed", 1, "--n-draws", 200,
                    "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for heading in ("Summary Statistics", "Statistical Test Results", "Effect Size", "random 30 vs 30 draws"):
        assert heading in result.output
    written = json.loads(next((tmp_path / "out").glob("stats-*/stats.json")).read_text())["score"]
    assert written["sample"]["groups"]["NORMAL"]["n"] == 30 and written["source"]["seed"] == 1
    assert len(written["resampled"]["p_values"]) == 200 and written["all_images"]["groups"]["PNEUMONIA"]["n"] == 60
    bad = invoke("stats", tmp_path / "scores.csv", "--score", "missing")
    assert bad.exit_code == 2 and "lacks column(s) missing" in bad.output
