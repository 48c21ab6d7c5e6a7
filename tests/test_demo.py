"""pipeline/demo and `pneumocam demo`: the files a demo run leaves, with the marker's masks when it cheats."""

import functools
import importlib
import json

from typer.testing import CliRunner

from pneumocam.pipeline.demo import run_demo

cli_app = importlib.import_module("pneumocam.cli.app")  # the module: pneumocam.cli.app the name is the Typer app


def test_the_demo_command_writes_a_whole_run_with_its_phantoms_and_masks(tmp_path, monkeypatch):
    # The command as users call it, on a demo shrunk to seconds (the default takes minutes).
    small = functools.partial(
        run_demo,
        counts={"train": 16, "val": 6, "test": 8},
        epochs=1,
        image_size=48,
        n_draws=20,
        bootstrap=20,
        trust_images=2,
        grid_per_class=1,
    )
    monkeypatch.setattr(cli_app, "run_demo", small)
    result = CliRunner().invoke(cli_app.app, ["demo", "--out", str(tmp_path), "--shortcut", "0.9"])
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.glob("demo-*")
    for name in ("report.html", "report.md", "results.json", "config.json", "predictions.csv", "importance.csv"):
        assert (run / name).is_file(), name
    assert not (run / "INCOMPLETE").exists()
    for folder in ("images", "lung-masks", "lesion-masks", "marker-masks"):
        # 16 + 6 + 8 films per class (counts are per class), each with its mask
        assert len(list((run / "phantoms" / folder).rglob("*.png"))) == 2 * (16 + 6 + 8), folder
    results = json.loads((run / "results.json").read_text())
    assert results["metrics"]["threshold_0.5"]["n"] == 16  # the test split: 8 per class
    assert "marker" in json.loads((run / "config.json").read_text())["experiment"]["masks"]
    assert str(run / "report.html") in result.output.replace("\n", "")
