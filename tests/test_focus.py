import cv2
import numpy as np
import pytest

from pneumocam.anatomy.focus import NEUTRAL_GREY, bounding_box, film_maps, focus_image
from pneumocam.data.phantoms import make_phantom


def test_bounding_box_is_the_masks_extent_plus_margin_clipped_to_the_image():
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:9, 12:20] = True  # rows 5..8, columns 12..19
    assert bounding_box(mask, 2) == (3, 11, 10, 22)
    assert bounding_box(mask, 10) == (0, 19, 2, 30)
    assert bounding_box(np.zeros((4, 6), dtype=bool), 1) == (0, 4, 0, 6)


def test_film_maps_put_a_crops_map_back_inside_its_box_only():
    maps = np.ones((1, 2, 2), dtype=np.float32)
    out = film_maps(maps, np.array([[8, 24, 4, 20]]), side=32, grid=32)
    assert out.shape == (1, 32, 32)
    assert out.sum() == 16 * 16  # a constant map fills its 16 x 16 box exactly
    assert out[0, 8:24, 4:20].min() == 1.0 and out[0, :8].max() == 0.0 and out[0, :, 20:].max() == 0.0
    half = film_maps(maps, np.array([[8, 24, 4, 20]]), side=32, grid=16)  # the box on a grid of half the side
    assert half.sum() == 8 * 8 and half[0, 4:12, 2:10].min() == 1.0


@pytest.mark.parametrize("size", [64, 96, 224])
def test_body_focus_hides_the_shortcut_marker(size):
    """The phantom's label-correlated corner marker lies outside the body: the focused film shows neutral grey there,
    and the same phantom without its marker is cropped to the same box within a pixel (Otsu's threshold, which
    finds the body, moves a little with the marker's bright pixels)."""
    for seed in range(12):
        marked = make_phantom(np.random.default_rng(seed), seed % 2, size, marker=True)
        plain = make_phantom(np.random.default_rng(seed), seed % 2, size, marker=False)
        assert marked.marker.any() and not np.array_equal(marked.image, plain.image)  # the fixture has a marker
        focused, (top, bottom, left, right) = focus_image(marked.image, "body")
        where = marked.marker[top:bottom, left:right].astype(np.uint8)
        where = cv2.resize(where, (size, size), interpolation=cv2.INTER_NEAREST)
        inner = cv2.erode(where, np.ones((3, 3), np.uint8)).astype(bool)  # interpolation blends the outermost pixel
        assert inner.any() and (focused[inner] == NEUTRAL_GREY).all()
        _, box_without = focus_image(plain.image, "body")
        assert np.abs(np.subtract((top, bottom, left, right), box_without)).max() <= 1


def test_lungs_focus_crops_to_the_lungs_and_keeps_them_whole():
    phantom = make_phantom(np.random.default_rng(3), 1, 96)
    focused, (top, bottom, left, right) = focus_image(phantom.image, "lungs", lungs=phantom.lungs)
    rows, cols = np.flatnonzero(phantom.lungs.any(axis=1)), np.flatnonzero(phantom.lungs.any(axis=0))
    margin = round(0.05 * 96)
    assert (top, bottom, left, right) == (
        max(0, rows[0] - margin),
        min(96, rows[-1] + 1 + margin),
        max(0, cols[0] - margin),
        min(96, cols[-1] + 1 + margin),
    )
    assert (bottom - top) * (right - left) < 0.8 * 96 * 96  # a real crop, not the whole film
    assert focused.shape == (96, 96)


def test_lungs_only_focus_shows_the_lungs_and_nothing_else():
    """Before the resize, the crop is the film inside the lung mask and neutral grey everywhere else (the
    mediastinum and the diaphragm included), over the same box as --focus lungs."""
    phantom = make_phantom(np.random.default_rng(5), 1, 96)
    _, box = focus_image(phantom.image, "lungs", lungs=phantom.lungs)
    focused, box_only = focus_image(phantom.image, "lungs-only", lungs=phantom.lungs)
    assert box_only == box
    top, bottom, left, right = box
    expected = np.where(phantom.lungs, phantom.image, NEUTRAL_GREY)[top:bottom, left:right].astype(np.uint8)
    expected = cv2.resize(expected, (96, 96), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(focused, expected)
    assert (~phantom.lungs[top:bottom, left:right]).sum() > 0.3 * (bottom - top) * (right - left)  # much was hidden


@pytest.mark.parametrize("size", [64, 96, 224])
def test_an_inside_marker_survives_body_focus_and_not_lungs_only(size):
    """The inside marker lies on the body below the lungs: --focus body keeps its pixels as they were (inside the
    body, inside the crop); --focus lungs-only crops it away, and where the lung box is widened to take it in (a lung
    patch just below it), turns every one of its pixels grey. Counted: the widened box does reach the marker."""
    reached = 0
    for seed in range(8):
        phantom = make_phantom(np.random.default_rng(seed), seed % 2, size, marker=True, place="inside")
        marker = phantom.marker
        assert marker.sum() >= 12 and not (marker & phantom.lungs).any()
        assert (phantom.image[marker] >= 240).all()  # 0.95 of white
        focused, (top, bottom, left, right) = focus_image(phantom.image, "body", lungs=phantom.lungs)
        where = cv2.resize(marker[top:bottom, left:right].astype(np.uint8), (size, size), cv2.INTER_NEAREST)
        inner = cv2.erode(where, np.ones((3, 3), np.uint8)).astype(bool)
        assert inner.any() and focused[inner].min() >= 235, ("body", seed)
        _, (top, bottom, left, right) = focus_image(phantom.image, "lungs-only", lungs=phantom.lungs)
        assert not marker[top:bottom, left:right].any(), seed  # cropped away
        rows, cols = np.nonzero(marker)
        widened = phantom.lungs.copy()
        widened[min(rows.max() + 3, size - 1), int(cols.mean())] = True  # one lung pixel below the marker
        focused, (top, bottom, left, right) = focus_image(phantom.image, "lungs-only", lungs=widened)
        inside = marker[top:bottom, left:right]
        if inside.any():
            reached += 1
            where = cv2.resize(inside.astype(np.uint8), (size, size), cv2.INTER_NEAREST)
            inner = cv2.erode(where, np.ones((3, 3), np.uint8)).astype(bool)
            assert inner.any() and (focused[inner] == NEUTRAL_GREY).all(), ("lungs-only", seed)
    assert reached == 8  # the widened lung box took in the marker on every film


def test_a_focused_model_is_shown_focused_films_by_run_evaluate_and_predict(phantom_data, tiny_config, tmp_path):
    """run trains with --focus body; its predictions equal the model's output on films focused by hand (and not on
    the raw films), and evaluate and predict on its model.pt give the same probabilities."""
    import csv
    import json

    import torch
    from typer.testing import CliRunner

    from pneumocam.cli.app import app
    from pneumocam.data import discover, load_images, to_model_input
    from pneumocam.model.network import load_checkpoint, probability
    from pneumocam.pipeline.experiment import run_experiment

    cfg = tiny_config(trust_images=4)
    cfg.train.focus = "body"
    run = run_experiment(cfg, runs_dir=tmp_path / "runs")
    model, meta = load_checkpoint(run / "train" / "model.pt")
    assert meta["focus"] == "body"
    results = json.loads((run / "results.json").read_text())
    assert results["focus"]["mode"] == "body" and results["focus"]["mean_box_area_share"] < 1.0
    assert results["cam"]["map_shape"] == [16, 16] and results["cam"]["input_map_shape"] == [2, 2]
    assert results["trust"] is not None

    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    by_hand = np.stack([focus_image(np.asarray(g), "body")[0] for g in loaded.images])
    with torch.inference_mode():
        focused_probs = probability(model(to_model_input(torch.from_numpy(by_hand))).flatten().double().numpy())
        raw_probs = probability(model(to_model_input(torch.from_numpy(loaded.images))).flatten().double().numpy())
    expected = dict(zip(loaded.paths, focused_probs))
    with open(run / "predictions.csv", newline="") as f:
        from_run = {r["path"]: float(r["prob_pneumonia"]) for r in csv.DictReader(f)}
    assert all(abs(from_run[p] - expected[p]) < 1e-5 for p in loaded.paths)
    assert np.abs(focused_probs - raw_probs).max() > 1e-3  # the check can tell focused from raw inputs

    runner = CliRunner()
    checkpoint = str(run / "train" / "model.pt")
    evaluated = runner.invoke(
        app, ["evaluate", "--checkpoint", checkpoint, "--data", str(phantom_data.images), "--out", str(tmp_path / "e")]
    )
    assert evaluated.exit_code == 0, evaluated.output
    with open(next((tmp_path / "e").glob("*/predictions.csv")), newline="") as f:
        assert all(abs(float(r["prob_pneumonia"]) - from_run[r["path"]]) < 1e-5 for r in csv.DictReader(f))
    files = sorted(loaded.paths)[:4]
    predicted = runner.invoke(app, ["predict", "--checkpoint", checkpoint, "--out", str(tmp_path / "p"), *files])
    assert predicted.exit_code == 0, predicted.output
    with open(next((tmp_path / "p").glob("*/predictions.csv")), newline="") as f:
        assert all(abs(float(r["prob_pneumonia"]) - from_run[r["path"]]) < 1e-5 for r in csv.DictReader(f))
