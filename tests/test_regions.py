"""Known answers for where a map falls, body and diaphragm regions, lung estimates, and the trust checks."""

import numpy as np
import pytest
import torch

from pneumocam.data.phantoms import make_phantom
from pneumocam.lungs import LungModel, body_mask, classical_lungs, dice, fill_holes
from pneumocam.regions import REGIONS, area_share, attention_measures, diaphragm_band, mass_share, partition, pointing_game


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(np.random.default_rng(21), 1, 128, marker=True)


def test_a_map_equal_to_the_lesion_hits_and_puts_all_mass_there(phantom):
    heat = phantom.lesion.astype(np.float32)[None]
    assert mass_share(heat, phantom.lesion[None])[0] == pytest.approx(1.0)
    assert pointing_game(heat, phantom.lesion[None])[0]


def test_a_uniform_map_gives_area_proportional_shares(phantom):
    heat = np.ones((1, 128, 128), np.float32)
    for region in (phantom.lungs, phantom.lesion, phantom.marker):
        assert mass_share(heat, region[None])[0] == pytest.approx(area_share(region[None])[0])
    measures = attention_measures(heat, phantom.image[None], phantom.lungs[None], np.array([True]))
    assert all(measures.ratios[r][0] == pytest.approx(1.0) for r in REGIONS)
    assert sum(measures.shares[r][0] for r in REGIONS) == pytest.approx(1.0)


def test_a_map_on_the_marker_lands_outside_the_body_and_misses_the_lungs(phantom):
    heat = phantom.marker.astype(np.float32)[None]
    measures = attention_measures(heat, phantom.image[None], phantom.lungs[None], np.array([True]))
    assert measures.shares["outside_body"][0] == pytest.approx(1.0) and measures.ratios["outside_body"][0] > 2
    assert not measures.pointing_lungs[0] and measures.shares["lungs"][0] == 0


def test_shortcut_marker_map_is_flagged_in_the_report_text():
    from pneumocam.experiment import conclusion_section

    results = {"provenance": {"eval_split": "test", "weights": {"source": "none"}, "synthetic_data": True},
               "metrics": {"threshold_0.5": {"n": 10, "roc_auc": 0.9, "accuracy": 0.8}},
               "ground_truth": {"marker": {"mean_mass_share": 0.30, "mean_area_share": 0.005, "images_with_mask": 5}}}
    text = " ".join(str(b) for b in conclusion_section(results, {}).blocks)
    assert "the model is using the marker" in text and "30.0%" in text


def test_body_mask_keeps_the_body_and_drops_border_and_burnt_in_marks(phantom):
    body = body_mask(phantom.image)
    assert body[64, 64] and body[phantom.lungs].all()
    assert not body[:4, :4].any() and not body[phantom.marker].any()
    letter = (phantom.image > 220) & ~phantom.marker & (np.arange(128)[:, None] < 20)
    assert letter.any() and not body[letter].any()  # the laterality letter on the border


def test_diaphragm_band_lies_just_below_each_lung():
    lungs = np.zeros((50, 50), bool)
    lungs[10:30, 5:20] = True
    lungs[10:25, 30:45] = True
    band = diaphragm_band(lungs, 4)
    assert band[30:34, 5:20].all() and band[25:29, 30:45].all()
    assert band.sum() == 4 * 15 * 2 and not (band & lungs).any()
    parts = partition(np.ones((50, 50), bool), lungs, 4)
    assert sum(p.astype(int) for p in parts.values()).max() == 1 and sum(p.sum() for p in parts.values()) == 2500


def test_fill_holes():
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[0, 0]


def test_classical_estimate_finds_phantom_lungs():
    scores = [dice(classical_lungs(p.image), p.lungs) for p in (make_phantom(np.random.default_rng(s), 0, 128) for s in range(5))]
    assert np.mean(scores) > 0.75, scores


def test_lung_model_learns_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    phantoms = [make_phantom(rng, i % 2, 96) for i in range(24)]
    masks = [p.lungs.astype(np.uint8) * 255 for p in phantoms]
    model = LungModel.fit([p.image for p in phantoms[:20]], masks[:20], epochs=120, seed=0)
    scores = [dice(model.predict(p.image), p.lungs) for p in phantoms[20:]]
    assert np.mean(scores) > 0.8, scores
    model.save(tmp_path / "lungs.pt")
    again = LungModel.load(tmp_path / "lungs.pt")
    assert np.array_equal(again.predict(phantoms[21].image), model.predict(phantoms[21].image))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    from pneumocam.errors import CheckpointError

    with pytest.raises(CheckpointError, match="cannot read lung model"):
        LungModel.load(tmp_path / "bad.pt")


def test_randomisation_flags_maps_that_ignore_the_weights(monkeypatch):
    import pneumocam.trust as trust
    from pneumocam.cam import CamResult
    from pneumocam.model import build_model

    class ImageOnly:
        """A 'method' whose maps are the image itself: blind to the weights."""

        def __init__(self, *a, **k):
            pass

        def __call__(self, images, target="pred", labels=None, description=""):
            small = images[:, ::16, ::16].astype(np.float32)
            return CamResult(small, np.zeros(len(images)), np.zeros(len(images), np.int8), "image", "none")

    monkeypatch.setattr(trust, "make_cam", lambda *a, **k: ImageOnly())
    model, _ = build_model("none", seed=0)
    images = np.stack([make_phantom(np.random.default_rng(i), 1, 64).image for i in range(4)])
    result = trust.randomisation_test(model, images, np.ones(4, int))
    assert result["flagged"] and all(r["spearman_mean"] == pytest.approx(1.0) for r in result["cascade"])


def test_randomisation_cascade_changes_gradcam_maps():
    from pneumocam.model import build_model
    from pneumocam.trust import randomisation_test

    model, _ = build_model("none", seed=0)
    with torch.no_grad():
        model.fc.weight.mul_(50)
    images = np.stack([make_phantom(np.random.default_rng(i), i % 2, 96).image for i in range(4)])
    result = randomisation_test(model, images, np.array([0, 1, 0, 1]))
    assert [r["randomised_up_to"] for r in result["cascade"]] == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]
    assert not result["flagged"]


def test_deletion_and_insertion_curves_share_their_end_points():
    from pneumocam.model import build_model
    from pneumocam.trust import deletion_insertion

    model, _ = build_model("none", seed=1)
    images = np.stack([make_phantom(np.random.default_rng(i), 1, 64).image for i in range(3)])
    maps = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    out = deletion_insertion(model, images, maps, np.ones(3, int), steps=4)
    for kind in ("maps", "random"):
        # the area is the trapezoid rule over fractions 0, 0.25, ..., 1, written out by hand
        c = out[kind]["deletion_curve"]
        assert len(c) == 5 and out[kind]["deletion_auc"] == pytest.approx(0.25 * (c[0] / 2 + c[1] + c[2] + c[3] + c[4] / 2))
        c = out[kind]["insertion_curve"]
        assert out[kind]["insertion_auc"] == pytest.approx(0.25 * (c[0] / 2 + c[1] + c[2] + c[3] + c[4] / 2))
    # Nothing deleted = the original film for both orderings; everything inserted = the original film too.
    assert out["maps"]["deletion_curve"][0] == pytest.approx(out["random"]["deletion_curve"][0])
    assert out["maps"]["insertion_curve"][-1] == pytest.approx(out["maps"]["deletion_curve"][0])


def test_an_empty_map_is_neither_a_hit_nor_a_miss():
    maps = np.zeros((3, 4, 4))
    maps[1, 0, 0] = 1.0  # inside the mask
    maps[2, 3, 3] = 1.0  # outside it
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[:, :2, :2] = True
    hits = pointing_game(maps, mask)
    assert np.isnan(hits[0]) and hits[1] == 1.0 and hits[2] == 0.0
    assert np.isnan(mass_share(maps, mask)[0])
