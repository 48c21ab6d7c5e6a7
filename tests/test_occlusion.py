"""explain/occlusion: occlusion maps against the formula computed by hand, and a penalised run's independent maps."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from pneumocam.data import IMAGENET_MEAN, IMAGENET_STD
from pneumocam.explain.occlusion import default_window, occlusion_maps


def _linear_model(side: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, 1))
    return model.eval()


def _by_hand(model, film: np.ndarray, label: int, window: int, stride: int) -> np.ndarray:
    """A(p) = mean over the windows W covering p of f_c(x) - f_c(x with W grey), f_c = +-logit; max(A, 0). Windows
    start every stride pixels until one reaches the edge; that last one is cut there, so every pixel is covered."""
    side = film.shape[0]
    mean, std = np.array(IMAGENET_MEAN).reshape(3, 1, 1), np.array(IMAGENET_STD).reshape(3, 1, 1)
    grey = round(255 * float(np.mean(IMAGENET_MEAN)))

    def evidence(gray):
        x = (np.repeat(gray[None].astype(np.float64) / 255.0, 3, axis=0) - mean) / std
        logit = model(torch.tensor(x[None], dtype=torch.float32)).item()
        return logit if label == 1 else -logit

    whole = evidence(film)
    total, count = np.zeros((side, side)), np.zeros((side, side))
    starts = [stride * k for k in range(-(-(side - window) // stride) + 1)]  # ceil((side - window) / stride) + 1
    for top in starts:
        for left in starts:
            hidden = film.copy()
            hidden[top : top + window, left : left + window] = grey
            total[top : top + window, left : left + window] += whole - evidence(hidden)
            count[top : top + window, left : left + window] += 1
    return np.maximum(np.divide(total, count, out=np.zeros_like(total), where=count > 0), 0)


@pytest.mark.parametrize("label", [0, 1])
def test_occlusion_maps_are_the_windowed_drop_in_evidence_written_out(label):
    side, window, stride = 16, 6, 3  # windows at 0, 3, 6, 9 and 12 (cut to 4 px at the edge)
    film = np.random.default_rng(label).integers(0, 256, (side, side)).astype(np.uint8)
    model = _linear_model(side)
    got = occlusion_maps(model, film[None], np.array([label]), window=window, stride=stride, grid=side)[0]
    expected = _by_hand(model, film, label, window, stride)
    assert expected.max() > 0 and (expected == 0).sum() > side  # both signs occur: the positive part matters
    assert expected[:, -1].max() > 0  # the cut last window covers the edge
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.max())


def test_default_window_is_a_seventh_of_the_side_in_half_steps():
    assert default_window(224) == (32, 16) and default_window(64) == (9, 4) and default_window(8) == (2, 1)


def test_bad_arguments_are_refused():
    model = _linear_model(8)
    film = np.zeros((1, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        occlusion_maps(model, film.astype(np.float32), np.array([0]))
    with pytest.raises(ValueError, match="stride"):
        occlusion_maps(model, film, np.array([0]), window=9, stride=2)


def test_a_run_of_a_penalised_model_measures_occlusion_maps_and_reports_them(tiny_config, phantom_data, tmp_path):
    from dataclasses import replace

    from pneumocam.pipeline.experiment import run_experiment

    base = tiny_config(occlusion_films=6, trust_images=0, reliance=False)
    penalised = {
        "mode": "partial",
        "epochs": 1,
        "attention_penalty": 1.0,
        "attention_masks": str(phantom_data.lung_masks),
    }
    train = replace(base.train, **penalised)
    run = run_experiment(replace(base, train=train), runs_dir=tmp_path)
    results = json.loads((run / "results.json").read_text())
    independent = results["independent_attention"]
    assert results["trained_against"] == {"explanation": "gradcam", "weight": 1.0}
    assert independent["method"] == "occlusion" and independent["n_films"] == 6
    assert independent["settings"]["window"] == 9 and independent["settings"]["stride"] == 4  # 64 px films
    assert set(independent["mean_ratio_by_class"]) == {"NORMAL", "PNEUMONIA"}
    assert "Independent evidence" in (run / "report.md").read_text()


def test_an_unpenalised_run_has_no_occlusion_maps(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["trained_against"] is None and results["independent_attention"] is None
