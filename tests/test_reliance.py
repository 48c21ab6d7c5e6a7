"""analysis/reliance: the decision-reliance check, against its formula written out, scikit-learn and hand counts."""

import csv
import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from pneumocam.analysis.reliance import CONTROLS, VARIANTS, reliance_summary, variant_images


def test_variants_are_the_feathered_mix_written_out():
    from scipy.ndimage import binary_dilation, binary_erosion

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (100, 100)).astype(np.uint8)
    lungs = np.zeros((100, 100), dtype=bool)
    lungs[20:80, 10:44] = lungs[20:80, 56:90] = True
    x = gray.astype(np.float64)
    sigma = 0.02 * 100  # the soft edge: sigma 2% of the side; it lies 2 sigmas (4 px) outside what is removed
    grown = gaussian_filter(binary_dilation(lungs, iterations=4).astype(np.float64), sigma)
    removed = np.maximum(grown, lungs)  # every lung pixel removed whole
    kept = gaussian_filter(binary_erosion(lungs, iterations=4).astype(np.float64), sigma) * lungs  # nothing outside
    blurred = gaussian_filter(x, 0.08 * 100)  # the heavy blur: sigma 8% of the side
    grey = round(255 * (0.485 + 0.456 + 0.406) / 3)  # the ImageNet mean grey that normalisation maps to zero: 114
    expected = {
        "whole": x,
        "lungs_removed_fill": x * (1 - removed) + grey * removed,
        "only_lungs_fill": x * kept + grey * (1 - kept),
        "lungs_removed_blur": x * (1 - removed) + blurred * removed,
        "only_lungs_blur": x * kept + blurred * (1 - kept),
    }
    got = variant_images(gray, lungs)
    assert set(got) == set(VARIANTS) == set(expected)
    for name, image in expected.items():
        assert got[name].dtype == np.uint8
        assert np.abs(got[name].astype(np.float64) - np.clip(np.rint(image), 0, 255)).max() <= 1, name
    # each variant removes its region whole: every lung pixel (edge included) is the grey with the lungs removed,
    # every pixel outside them is the grey with only the lungs kept; far from the lungs the film is untouched
    assert (got["lungs_removed_fill"][lungs] == grey).all() and (got["only_lungs_fill"][~lungs] == grey).all()
    assert (got["lungs_removed_blur"][lungs] == np.clip(np.rint(blurred), 0, 255)[lungs]).all()
    assert grey == 114
    assert np.array_equal(got["lungs_removed_fill"][:3], gray[:3])
    assert np.array_equal(got["only_lungs_fill"][50, 25:30], gray[50, 25:30])  # deep inside a lung: untouched


def _probs(labels, rng, separation):
    """Scores whose ranking of PNEUMONIA over NORMAL weakens as separation falls (0: chance)."""
    return np.clip(0.5 + separation * (labels - 0.5) + rng.normal(0, 0.15, len(labels)), 0, 1)


@pytest.mark.parametrize(
    "removed, only, verdict",
    [
        (0.0, 0.8, "the decision rests on the lungs"),
        (0.8, 0.05, "the decision rests largely outside the lungs"),
        (0.5, 0.5, "mixed"),
    ],
)
def test_the_verdict_follows_the_share_of_the_ranking_each_variant_keeps(removed, only, verdict):
    rng = np.random.default_rng(3)
    labels = np.array([0] * 40 + [1] * 40)
    probs = {name: _probs(labels, rng, 0.8) for name in VARIANTS}
    probs["lungs_removed_fill"], probs["only_lungs_fill"] = _probs(labels, rng, removed), _probs(labels, rng, only)
    summary = reliance_summary(probs, labels, n_resamples=0)
    auc = {name: roc_auc_score(labels, p) for name, p in probs.items()}
    for name in VARIANTS:
        assert summary["variants"][name]["roc_auc"] == pytest.approx(auc[name], abs=1e-12)
        mean = summary["variants"][name]["mean_probability"]
        assert mean["NORMAL"] == pytest.approx(probs[name][:40].mean()) and mean["PNEUMONIA"] == pytest.approx(
            probs[name][40:].mean()
        )
    kept = {k: (auc[k] - 0.5) / (auc["whole"] - 0.5) for k in VARIANTS if k != "whole"}
    assert summary["share_of_ranking_kept"] == pytest.approx(kept)
    # the rule by hand: removed <= 0.5 and only >= 0.9 -> on the lungs; only < 0.5 -> outside; else mixed
    by_hand = (
        "the decision rests on the lungs"
        if kept["lungs_removed_fill"] <= 0.5 and kept["only_lungs_fill"] >= 0.9
        else "the decision rests largely outside the lungs"
        if kept["only_lungs_fill"] < 0.5
        else "mixed"
    )
    assert summary["verdict"].startswith(by_hand) and summary["verdict"].startswith(verdict)


def test_a_run_reports_the_check_and_its_whole_film_auc_is_the_runs(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    reliance = results["reliance"]
    with open(tiny_run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in rows])
    probs = np.array([float(r["prob_pneumonia"]) for r in rows])
    assert reliance["n_images"] == len(rows) and set(reliance["variants"]) == set(VARIANTS) | set(CONTROLS)
    assert reliance["controls"]["mean_overlap_with_lungs"] <= 0.25 and "film_probabilities" not in reliance
    assert reliance["map_agreement"]["n_films"] == len(rows)
    # the whole film, read as the run reads it, is the run's own prediction
    assert reliance["variants"]["whole"]["roc_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    assert reliance["lung_sources"] == {"mask": len(rows)}  # the phantoms' lung masks, one per film
    report = (tiny_run / "report.md").read_text()
    assert "What does the decision rest on?" in report and "only the lungs kept (grey fill)" in report
    assert "lungs removed (imputed, ROAD)" in report and "Does the map predict the intervention?" in report


def _trained_reliance(tmp_path, per_class, epochs, focus="none", **phantoms):
    """The reliance check of a model trained on 64 px phantoms (a head on random features unless the focus hides
    what it would read), on 30 test films per class with their lung masks."""
    from pneumocam.analysis.reliance import film_lungs, reliance_probabilities
    from pneumocam.data import discover, load_images
    from pneumocam.data.phantoms import write_phantom_dataset
    from pneumocam.model.inputs import ModelInputs
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    counts = {"train": per_class, "val": 20, "test": 30}
    data = write_phantom_dataset(tmp_path / "p", counts, size=64, seed=3, **phantoms)
    config = TrainConfig(
        data=str(data.images), mode="frozen", weights="none", image_size=64, epochs=epochs, batch_size=16,
        val_source="dataset", seed=0, use_cache=False, focus=focus,
        focus_masks=str(data.lung_masks) if focus != "none" else None,
    )  # fmt: skip
    model, meta = load_checkpoint(fit(config, runs_dir=tmp_path / "runs") / "model.pt")
    films = load_images(discover(data.images).split("test"), 64, use_cache=False)
    lungs, sources = film_lungs(films, str(data.lung_masks), None)
    assert sources == ["mask"] * 60
    probs = reliance_probabilities(model, ModelInputs.of_checkpoint(meta), films, lungs, 32, "cpu")
    summary = reliance_summary(probs, films.labels, n_resamples=0)
    assert summary["variants"]["whole"]["roc_auc"] == pytest.approx(roc_auc_score(films.labels, probs["whole"]))
    return summary


@pytest.mark.parametrize(
    "marker, per_class, epochs, learned",
    [("corner", 60, 10, 0.8), ("inside", 200, 20, 0.8)],  # the inside marker is dimmer: more films to learn it
)
def test_a_model_that_reads_a_marker_outside_the_lungs_is_caught(tmp_path, marker, per_class, epochs, learned):
    """Phantoms with a label-correlated marker outside the lungs (95% of PNEUMONIA films, 5% of NORMAL), on the blank
    corner or on the body below the lungs, and no cure: a head on random features learns the marker, not the
    lesions. Keeping only the lungs must lose the ranking (at least 0.2 of ROC-AUC below the whole film, and less
    than half of the whole film's AUC above chance: the verdict's rule written out) and the verdict must say the
    decision lies outside the lungs."""
    summary = _trained_reliance(tmp_path, per_class, epochs, shortcut=0.95, marker=marker)
    whole, only = summary["variants"]["whole"]["roc_auc"], summary["variants"]["only_lungs_fill"]["roc_auc"]
    assert whole >= learned, "the fixture must learn the shortcut for the check to be tested"
    assert only <= whole - 0.2 and (only - 0.5) < 0.5 * (whole - 0.5)
    assert summary["verdict"] == "the decision rests largely outside the lungs"


def test_a_model_shown_only_the_lungs_is_not_flagged(tmp_path):
    """No marker, and --focus lungs-only: nothing outside the lungs reaches the model, so the known answer is that
    its decision rests on them. Removing the lungs keeps at most half of its ranking above chance and keeping only
    them keeps nearly all of it (the feather inside the lungs' edge fades their rim, so not exactly all)."""
    summary = _trained_reliance(tmp_path, 60, 10, focus="lungs-only")
    auc = {k: v["roc_auc"] for k, v in summary["variants"].items()}
    assert auc["whole"] >= 0.65, "the fixture must learn something from the lungs"
    assert (auc["lungs_removed_fill"] - 0.5) <= 0.5 * (auc["whole"] - 0.5)
    assert auc["only_lungs_fill"] >= auc["whole"] - 0.1
    assert summary["verdict"] != "the decision rests largely outside the lungs"


def test_a_masks_ignore_pixels_count_as_lung_in_the_check(tmp_path):
    """A reference mask with 255 lung, 127 'ignore' inside and outside the lung, 0 elsewhere: the check removes
    the lung and both ignore blocks (hand count of the pixels: 16 x 16 lung + 2 blocks of 4 x 4)."""
    from PIL import Image

    from pneumocam.analysis.reliance import film_lungs
    from pneumocam.data import LoadedImages, Sample

    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 8:24] = 255
    mask[12:16, 12:16] = 127  # a device over the lung
    mask[40:44, 40:44] = 127  # and one outside it
    (tmp_path / "masks" / "test" / "NORMAL").mkdir(parents=True)
    Image.fromarray(mask).save(tmp_path / "masks" / "test" / "NORMAL" / "film.png")
    loaded = LoadedImages(
        [Sample(str(tmp_path / "film.png"), 0, "test", None)], np.full((1, 64, 64), 100, np.uint8), [], False
    )
    lungs, sources = film_lungs(loaded, str(tmp_path / "masks"), None)
    assert sources == ["mask"] and int(lungs.sum()) == 16 * 16 + 4 * 4
    assert lungs[0, 12:16, 12:16].all() and lungs[0, 40:44, 40:44].all()


def test_the_reliance_check_per_population_by_hand():
    """Population a: removing the lungs takes the whole ranking away, the lungs alone keep it (rests on the lungs);
    b: the reverse (rests outside them); c: one class (undetermined). Each variant's AUC is scikit-learn's on the
    population's films."""
    from sklearn.metrics import roc_auc_score

    from pneumocam.analysis.reliance import VARIANTS, reliance_by_group

    labels = np.array([0, 0, 1, 1] * 2 + [1, 1])
    groups = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 2, dtype=object)
    whole = np.array([0.1, 0.2, 0.8, 0.9] * 2 + [0.7, 0.8])
    flat = np.full(10, 0.5)
    probs = {name: whole.copy() for name in VARIANTS}
    probs["lungs_removed_fill"] = np.where(groups == "a", flat, whole)
    probs["only_lungs_fill"] = np.where(groups == "b", flat, whole)
    found = reliance_by_group(probs, labels, groups)
    assert found["a"]["verdict"] == "the decision rests on the lungs"
    assert found["b"]["verdict"] == "the decision rests largely outside the lungs"
    assert found["c"] == {"n_images": 2, "verdict": "undetermined: the group holds one class"}
    for name in ("a", "b"):
        member = groups == name
        for variant, auc in found[name]["roc_auc"].items():
            assert auc == pytest.approx(roc_auc_score(labels[member], probs[variant][member])), (name, variant)
    assert found["a"]["share_of_ranking_kept"]["lungs_removed_fill"] == pytest.approx(0.0)
    assert found["b"]["share_of_ranking_kept"]["only_lungs_fill"] == pytest.approx(0.0)
