"""predict: the checkpoint's threshold, the probabilities evaluate gives, overlays at each file's size, skips listed."""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from pneumocam.cli.app import app
from pneumocam.data import discover
from pneumocam.model.network import load_checkpoint

runner = CliRunner()


def test_predict_uses_the_recorded_threshold_and_equals_evaluate(phantom_data, tmp_path, tiny_checkpoint):
    trained = tiny_checkpoint
    _, meta = load_checkpoint(trained / "model.pt")
    files = sorted(s.path for s in discover(phantom_data.images).split("test"))
    evaluated = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(trained / "model.pt"),
            "--data",
            str(phantom_data.images),
            "--out",
            str(tmp_path / "e"),
            "--bootstrap",
            "0",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    with open(next((tmp_path / "e").glob("*/predictions.csv")), newline="") as f:
        from_evaluate = {r["path"]: float(r["prob_pneumonia"]) for r in csv.DictReader(f)}
    predicted = runner.invoke(
        app, ["predict", "--checkpoint", str(trained / "model.pt"), "--out", str(tmp_path / "p"), *files]
    )
    assert predicted.exit_code == 0, predicted.output
    threshold = meta["thresholds"]["youden_val"]
    assert f"{threshold:.3f}" in predicted.output and "0.5" in predicted.output
    with open(next((tmp_path / "p").glob("*/predictions.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == files
    probs = np.array([float(r["prob_pneumonia"]) for r in rows])
    assert np.allclose(probs, [from_evaluate[p] for p in files], atol=2e-6)
    (column,) = [k for k in rows[0] if k.startswith("pred_at_") and k != "pred_at_0.5"]
    assert [r[column] for r in rows] == ["PNEUMONIA" if p >= threshold else "NORMAL" for p in probs]
    assert [r["pred_at_0.5"] for r in rows] == ["PNEUMONIA" if p >= 0.5 else "NORMAL" for p in probs]
    meta_out = json.loads(next((tmp_path / "p").glob("*/predict.json")).read_text())
    assert meta_out["leakage"]["n_images_seen_in_training"] == 0


def test_predict_writes_overlays_and_lists_skips(phantom_data, tmp_path, write_dicom):
    from pneumocam.model.network import build_model, save_checkpoint

    model, info = build_model("none", seed=0)
    save_checkpoint(tmp_path / "model.pt", model, {"image_size": 64, "weights": info.to_dict()})
    film = next((phantom_data.images / "test" / "PNEUMONIA").glob("*.png"))
    wide = tmp_path / "wide.png"
    Image.fromarray(np.tile(np.arange(120, dtype=np.uint8), (80, 1))).save(wide)
    broken = tmp_path / "broken.jpeg"
    broken.write_text("not an image")
    dicom = write_dicom(
        tmp_path / "film.dcm", np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (60, 1)), photometric="MONOCHROME1"
    )
    result = runner.invoke(
        app,
        [
            str(a)
            for a in (
                "predict",
                "--checkpoint",
                tmp_path / "model.pt",
                "--out",
                tmp_path / "pred",
                film,
                wide,
                broken,
                dicom,
            )
        ],
    )
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "pred").glob("predict-*"))
    overlays = sorted(folder.glob("*.png"))
    strip = int(12 * 1.8)  # the caption strip above each overlay: a 12 px font (the smallest) and its margins
    assert len(overlays) == 3 and Image.open(folder / "001_wide_gradcam.png").size == (120, 80 + strip)
    assert Image.open(folder / "002_film_gradcam.png").size == (80, 60 + strip)  # DICOM overlay at its resolution
    with open(folder / "predictions.csv", newline="") as f:
        verdicts = {Path(r["path"]).name: (r["in_distribution"], r["ood_reason"]) for r in csv.DictReader(f)}
    assert verdicts["film.dcm"] == ("0", "very small image (80x60 px)")  # 60 px < the guard's 64
    assert verdicts["wide.png"][0] == "1"  # 120x80 px, aspect 1.5: passes the input checks (no guard fitted)
    text = (folder / "predictions.csv").read_text()
    assert "broken.jpeg,,skipped,,not a readable image" in text
