"""evaluate --tta: the probability of each film is the mean of the model's calibrated probabilities on the film and
on four views of it, each view made here with torchvision and read by the model here by hand."""

import csv
import json

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from pneumocam.cli.app import app

runner = CliRunner()


def test_tta_is_the_mean_of_the_five_views_read_by_hand(tiny_checkpoint, phantom_data, tmp_path):
    from pneumocam.data import to_model_input
    from pneumocam.model.network import load_checkpoint

    checkpoint = tiny_checkpoint / "model.pt"
    model, meta = load_checkpoint(checkpoint)
    assert meta.get("focus", "none") in ("none", None)  # the films are read as they are: no crop to undo here
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(checkpoint), "--data", str(phantom_data.images), "--split", "test",
         "--out", str(out), "--bootstrap", "0", "--precision", "fp32", "--tta"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = next(out.glob("evaluate-test-*"))
    with open(folder / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16  # the phantom test split: 8 films per class

    size = int(meta["image_size"])
    films = torch.from_numpy(
        np.stack([np.asarray(Image.open(r["path"]).convert("L").resize((size, size), Image.BILINEAR)) for r in rows])
    )
    views = [(0, 1.0), (-5, 1.0), (5, 1.0), (0, 0.95), (0, 1.05)]  # degrees, scale: the five views written out
    model.eval()
    with torch.no_grad():
        by_view = [
            torch.sigmoid(model(to_model_input(TF.affine(films, angle=a, translate=[0, 0], scale=s, shear=[0.0, 0.0]))))
            .flatten()
            .numpy()
            for a, s in views
        ]
    expected = np.mean(by_view, axis=0)
    got = np.array([float(r["prob_pneumonia"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(by_view[0] - expected).max() > 1e-2  # the views move the probabilities: TTA is not a no-op
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["metrics"]["threshold_0.5"]["roc_auc"] == pytest.approx(roc_auc_score(labels, got))
    per_view = metrics["tta"]["roc_auc_per_view"]
    assert list(per_view) == ["as_is", "rotate_-5", "rotate_+5", "scale_0.95", "scale_1.05"]
    assert per_view["rotate_+5"] == pytest.approx(roc_auc_score(labels, by_view[2]))


def test_tta_with_several_checkpoints_is_refused(tiny_checkpoint, phantom_data, tmp_path):
    checkpoint = str(tiny_checkpoint / "model.pt")
    result = runner.invoke(
        app,
        ["evaluate", "--checkpoint", checkpoint, "--checkpoint", checkpoint, "--data", str(phantom_data.images),
         "--out", str(tmp_path), "--tta"],
    )  # fmt: skip
    assert result.exit_code != 0 and "not built for an ensemble" in result.output
    assert not list(tmp_path.glob("evaluate-*"))
