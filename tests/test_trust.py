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


def test_trust_checks_sample_both_classes_and_reuse_the_main_maps(tiny_run):
    """The trust entry of a run: as many images as asked, half per class, the method of the main pass."""
    import json

    trust = json.loads((tiny_run / "results.json").read_text())["trust"]
    assert (
        trust["randomisation"]["n_images"] == 16 and trust["faithfulness"]["n_images"] == 16
    )  # 8 per class of the test split
    assert trust["randomisation"]["method"] == "gradcam" and trust["faithfulness"]["steps"] == 10
