"""`--model SPEC`: foreign classifiers through `run`, `evaluate` and `predict` end to end (model/foreign.py), their
maps against pytorch-grad-cam, their reliance probabilities against the network called by hand, and one-line errors."""

import csv
import json

import numpy as np
import pytest
import torch
import torchvision
from typer.testing import CliRunner

from pneumocam.analysis.reliance import VARIANTS, reliance_probabilities, variant_images
from pneumocam.cli.app import app
from pneumocam.core.errors import SettingError
from pneumocam.core.runfiles import read_heatmaps_checked
from pneumocam.data import discover, load_images
from pneumocam.data.transforms import to_model_input
from pneumocam.explain.cam import normalise_per_image, upsample
from pneumocam.model.foreign import ModelSpec, open_foreign
from pneumocam.model.inputs import ModelInputs

LABELS = "Atelectasis|Pneumonia|Effusion"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def foreign_files(tmp_path_factory):
    """A DenseNet121 with one output and a ResNet18 with three (multi-label), random weights, as state_dicts."""
    folder = tmp_path_factory.mktemp("foreign")
    torch.manual_seed(0)
    torch.save(torchvision.models.densenet121(num_classes=1).state_dict(), folder / "densenet.pt")
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), folder / "multi.pt")
    return {
        "densenet": f"torchvision:{folder / 'densenet.pt'},arch=densenet121,size=64",
        "multi": f"torchvision:{folder / 'multi.pt'},arch=resnet18,outputs=3,labels={LABELS},output=Pneumonia,size=64",
    }


def by_hand(net: torch.nn.Module, films: np.ndarray) -> torch.Tensor:
    """The foreign network on films read by hand: [0, 1], three copies, ImageNet mean and std."""
    x = torch.from_numpy(films).float()[:, None].expand(-1, 3, -1, -1) / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((x - mean) / std)


def in_distribution(phantom_data) -> list:
    """The films named as in-distribution for a foreign guard: the phantoms' train split."""
    return sorted((phantom_data.images / "train").rglob("*.png"))


@pytest.fixture(scope="module")
def foreign_runs(foreign_files, phantom_data, tmp_path_factory):
    """`run --model` of each foreign model on the phantoms' test split: {name: run folder}."""
    runs = {}
    named = tmp_path_factory.mktemp("named") / "in-distribution.csv"  # the multi-label model's guard films
    named.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in in_distribution(phantom_data)))
    for which, spec in foreign_files.items():
        out = tmp_path_factory.mktemp(f"runs-{which}")
        guard = ("--guard-films", named) if which == "multi" else ()
        result = invoke(
            "run", "--model", spec, "--data", phantom_data.images, "--eval-split", "test", "--out", out,
            "--lung-masks", phantom_data.lung_masks, "--trust-images", 4, "--n-per-class", 4, "--n-draws", 20,
            "--bootstrap", 20, "--batch-size", 8, *guard,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        (runs[which],) = out.glob("run-*")
    return runs


@pytest.mark.parametrize("which, index", [("densenet", 0), ("multi", 1)])
def test_a_foreign_model_goes_through_run_end_to_end(foreign_files, foreign_runs, phantom_data, which, index):
    run, spec = foreign_runs[which], foreign_files[which]
    results = json.loads((run / "results.json").read_text())
    model = results["provenance"]["model"]
    assert model["kind"] == "torchvision" and model["output"] == ("Pneumonia" if which == "multi" else 0)
    assert results["provenance"]["weights"]["source"] == "foreign" and not results["leakage"]["recorded"]
    report = (run / "report.md").read_text()
    assert "A MODEL PNEUMOCAM DID NOT TRAIN" in report and "Leakage unknown" in report
    assert results["reliance"]["verdict"] and results["trust"]["randomisation"]["cascade"]

    # The probabilities are the chosen output of the network called by hand on the films.
    heat = read_heatmaps_checked(run / "heatmaps.npz", None)
    net, _ = open_foreign(spec)
    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    order = [list(loaded.paths).index(p) for p in heat["paths"]]
    expected = torch.sigmoid(by_hand(net.net, np.asarray(loaded.images)[order])[:, index]).numpy()
    np.testing.assert_allclose(heat["probs"], expected, atol=1e-5)


def test_two_foreign_models_compared_on_the_same_films(foreign_runs, tmp_path):
    from sklearn.metrics import roc_auc_score

    result = invoke("compare", foreign_runs["densenet"], foreign_runs["multi"], "--out", tmp_path, "--bootstrap", 20)
    assert result.exit_code == 0, result.output
    (record,) = tmp_path.rglob("compare.json")
    auc = json.loads(record.read_text())["classification"]["roc_auc"]
    by_run = []
    for name in ("densenet", "multi"):
        rows = list(csv.DictReader(open(foreign_runs[name] / "predictions.csv")))
        by_run.append(roc_auc_score([int(r["label"]) for r in rows], [float(r["prob_pneumonia"]) for r in rows]))
    assert auc["A"] == pytest.approx(by_run[0]) and auc["B"] == pytest.approx(by_run[1])
    assert auc["difference"] == pytest.approx(by_run[1] - by_run[0])


def test_foreign_gradcam_maps_equal_pytorch_grad_cam(foreign_files, phantom_data, tmp_path):
    from pytorch_grad_cam import GradCAM as LibGradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    from pneumocam.explain.cam import make_cam

    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    films = np.asarray(loaded.images)
    for which in ("densenet", "multi"):
        adapter, _ = open_foreign(foreign_files[which])
        ours = make_cam(adapter, "gradcam", batch_size=4)(films, target="NORMAL")
        comparable = normalise_per_image(upsample(normalise_per_image(ours.maps), 64))
        x = to_model_input(torch.from_numpy(films), channels_last=False)
        with LibGradCAM(model=adapter, target_layers=[adapter.get_submodule(adapter.layer)]) as cam:
            theirs = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(0)] * len(films))
        live = theirs.max(axis=(1, 2)) > 0  # the library leaves an all-zero map at zero; so do we
        assert live.sum() >= len(films) // 2, which  # the comparison covers most films
        assert np.abs(comparable[live] - theirs[live]).max() < 1e-5, which


def test_reliance_probabilities_are_the_network_on_the_greyed_films(foreign_files, phantom_data):
    adapter, meta = open_foreign(foreign_files["multi"])
    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    lungs = np.zeros(loaded.images.shape, dtype=bool)
    lungs[:, 12:52, 8:28] = lungs[:, 12:52, 36:56] = True  # two hand-drawn lung fields
    probs = reliance_probabilities(adapter, ModelInputs.of_checkpoint(meta), loaded, lungs, 8, "cpu")
    for name in VARIANTS:
        films = np.stack([variant_images(g, m)[name] for g, m in zip(np.asarray(loaded.images), lungs)])
        expected = torch.sigmoid(by_hand(adapter.net, films)[:, 1]).numpy()
        np.testing.assert_allclose(probs[name], expected, atol=1e-5, err_msg=name)
    assert not np.allclose(probs["whole"], probs["lungs_removed_fill"])  # the removal reached the network


def test_evaluate_and_predict_take_a_foreign_model(foreign_files, phantom_data, tmp_path):
    spec = foreign_files["multi"] + ",threshold=val"
    result = invoke("evaluate", "--model", spec, "--data", phantom_data.images, "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "e").glob("evaluate-*")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "chosen by pneumocam" in metrics["decision"]["chosen"] and "val" in metrics["decision"]["chosen"]
    film = next((phantom_data.images / "test").rglob("*.png"))
    given = foreign_files["multi"] + ",threshold=0.25"
    result = invoke("predict", "--model", given, "--out", tmp_path / "p", film)
    assert result.exit_code == 0 and "threshold 0.250" in result.output, result.output
    result = invoke("predict", "--model", spec, "--out", tmp_path / "p", film)  # no val split to choose on
    assert result.exit_code == 2 and "threshold=val" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "suffix, message",
    [
        (",layer=layer9", "'layer9' is not a layer of this model; its layers to two levels: conv1, bn1"),
        (",output=Pneumothorax", "'Pneumothorax' is not one of the model's outputs; its outputs: Atelectasis, Pneu"),
        (",colour=red", "takes key=value with keys output, labels"),
        (",threshold=2", "give a probability in (0, 1)"),
    ],
)
def test_a_wrong_declaration_is_one_line_naming_the_valid_ones(foreign_files, phantom_data, tmp_path, suffix, message):
    result = invoke("evaluate", "--model", foreign_files["multi"] + suffix, "--data", phantom_data.images)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert len([line for line in result.output.splitlines() if "error" in line.lower()]) == 1


def test_a_spec_is_parsed_into_its_declarations():
    spec = ModelSpec.parse("torchscript:/m.ts,output=Pneumonia,labels=A|Pneumonia,channels=1,normalisation=xrv")
    declared = spec.declared()
    assert (spec.kind, spec.source, declared["output"]) == ("torchscript", "/m.ts", "Pneumonia")
    assert declared["labels"] == ["A", "Pneumonia"]
    assert (declared["reading"].channels, declared["reading"].normalisation) == (1, "xrv")
    with pytest.raises(SettingError, match="needs arch=NAME"):
        ModelSpec.parse("torchvision:/w.pt")
    with pytest.raises(SettingError, match="names no model kind"):
        ModelSpec.parse("onnx:/m.onnx")


def test_a_foreign_model_s_guard_is_fitted_on_the_films_named_in_distribution(
    foreign_runs, foreign_files, phantom_data
):
    from pneumocam.model.foreign import layer_features

    run, films = foreign_runs["multi"], in_distribution(phantom_data)
    results = json.loads((run / "results.json").read_text())
    fitted = results["guard"]["fitted_on"]
    assert results["guard"]["fitted"] and fitted["films"].endswith("in-distribution.csv")
    assert fitted["n_train"] + fitted["n_val"] == len(films)
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert all(np.isfinite(float(r["ood_score"])) for r in rows)  # every film measured against the fitted guard
    assert "films the user named as in-distribution" in (run / "report.md").read_text()
    densenet = json.loads((foreign_runs["densenet"] / "results.json").read_text())
    assert not densenet["guard"]["fitted"]  # none named: the input checks only
    adapter, _ = open_foreign(foreign_files["multi"])
    features = layer_features(adapter, np.zeros((2, 64, 64), dtype=np.uint8), 2, "cpu")
    assert features.shape == (2, 512)  # resnet18's layer4, pooled
    refused = invoke("run", "--model", str(run / "missing.pt"), "--data", phantom_data.images, "--guard-films", run)
    assert refused.exit_code == 2 and "--guard-films fits a guard for a foreign --model" in refused.output
