"""Trust checks: the randomisation cascade and deletion / insertion, on small random models."""

import numpy as np
import pytest
import torch

from pneumocam.data.phantoms import make_phantom


def test_randomisation_flags_maps_that_ignore_the_weights(monkeypatch):
    from pneumocam.analysis import trust
    from pneumocam.explain.cam import CamResult
    from pneumocam.model.network import build_model

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
    from pneumocam.analysis.trust import randomisation_test
    from pneumocam.model.network import build_model

    model, _ = build_model("none", seed=0)
    with torch.no_grad():
        model.fc.weight.mul_(50)
    images = np.stack([make_phantom(np.random.default_rng(i), i % 2, 96).image for i in range(4)])
    result = randomisation_test(model, images, np.array([0, 1, 0, 1]))
    assert [r["randomised_up_to"] for r in result["cascade"]] == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1"]
    assert not result["flagged"]


def test_deletion_and_insertion_curves_share_their_end_points():
    from pneumocam.analysis.trust import deletion_insertion
    from pneumocam.model.network import build_model

    model, _ = build_model("none", seed=1)
    images = np.stack([make_phantom(np.random.default_rng(i), 1, 64).image for i in range(3)])
    maps = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    out = deletion_insertion(model, images, maps, np.ones(3, int), steps=4)
    for kind in ("maps", "random"):
        # the area is the trapezoid rule over fractions 0, 0.25, ..., 1, written out by hand
        c = out[kind]["deletion_curve"]
        assert len(c) == 5 and out[kind]["deletion_auc"] == pytest.approx(
            0.25 * (c[0] / 2 + c[1] + c[2] + c[3] + c[4] / 2)
        )
        c = out[kind]["insertion_curve"]
        assert out[kind]["insertion_auc"] == pytest.approx(0.25 * (c[0] / 2 + c[1] + c[2] + c[3] + c[4] / 2))
    # Nothing deleted = the original film for both orderings; everything inserted = the original film too.
    assert out["maps"]["deletion_curve"][0] == pytest.approx(out["random"]["deletion_curve"][0])
    assert out["maps"]["insertion_curve"][-1] == pytest.approx(out["maps"]["deletion_curve"][0])


def test_trust_checks_sample_both_classes_and_reuse_the_main_maps(monkeypatch):
    """trust_checks on 20 NORMAL and 10 PNEUMONIA films asked for 16: both checks get 8 films of each class (hand
    count), and the randomisation check compares against the main pass's own maps of exactly those films."""
    from types import SimpleNamespace

    from pneumocam.analysis import trust

    labels = np.array([0] * 20 + [1] * 10)
    images = np.arange(30, dtype=np.uint8)[:, None, None] * np.ones((1, 8, 8), np.uint8)  # film i is all i
    maps = np.random.default_rng(0).random((30, 7, 7)).astype(np.float32)
    cam = SimpleNamespace(maps=maps, targets=labels.astype(np.int8), method="gradcam")
    seen = {}
    monkeypatch.setattr(trust, "randomisation_test", lambda m, imgs, t, method, seed, reference: seen.update(
        rand=(imgs, t, reference, method)) or {"n_images": len(imgs)})  # fmt: skip
    monkeypatch.setattr(trust, "deletion_insertion", lambda m, imgs, mp, t, steps, seed, device: seen.update(
        faith=(imgs, mp)) or {"n_images": len(imgs)})  # fmt: skip
    trust.trust_checks(None, SimpleNamespace(images=images), cam, labels, 16, 10, 0, "cpu")
    imgs, targets, reference, method = seen["rand"]
    picked = imgs[:, 0, 0].astype(int)  # which films were sampled
    assert np.bincount(labels[picked], minlength=2).tolist() == [8, 8] and method == "gradcam"
    assert np.array_equal(reference, maps[picked]) and np.array_equal(targets, labels[picked])
    assert np.array_equal(seen["faith"][0], imgs) and np.array_equal(seen["faith"][1], maps[picked])


def test_map_similarity_between_seeds_by_hand():
    from pneumocam.analysis.trust import map_similarity

    rng = np.random.default_rng(0)
    maps = rng.random((3, 7, 7)).astype(np.float32)
    other = np.stack([2.0 * maps[0] + 5.0, -maps[1], np.full((7, 7), 0.3, np.float32)])
    found = map_similarity(maps, other, 28)
    # film 0: a positive affine copy (same ranks, same normalised map), film 1: ranks reversed, film 2: constant
    assert found["spearman"][0] == pytest.approx(1.0) and found["spearman"][1] == pytest.approx(-1.0)
    assert np.isnan(found["spearman"][2]) and found["spearman_mean"] == pytest.approx(0.0)  # (1 - 1) / 2
    assert found["ssim"][0] == pytest.approx(1.0) and found["ssim"][1] < 0.0
    assert found["n_films"] == 3
