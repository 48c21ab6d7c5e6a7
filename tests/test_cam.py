"""Grad-CAM equals pytorch-grad-cam's on the same model, layer and images; heatmaps.npz holds plain arrays."""

import numpy as np
import pytest
import torch

from pneumocam.core.runfiles import read_heatmaps_checked
from pneumocam.core.schema import write_heatmaps
from pneumocam.data import to_model_input
from pneumocam.data.phantoms import make_phantom
from pneumocam.explain.cam import GradCAM, HiResCAM, make_cam, normalise_per_image, resolve_targets, upsample
from pneumocam.model.network import build_model


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return np.stack([make_phantom(rng, i % 2, 96).image for i in range(6)])


@pytest.fixture(scope="module")
def model(images):
    m, _ = build_model("none", seed=4)
    m.eval()
    # A random ResNet50 has near-constant logits: spread the head, then centre it between the 3rd and 4th logit,
    # so the six images are predicted 3 NORMAL and 3 PNEUMONIA (checked in test_fixture_predicts_both_classes).
    with torch.no_grad():
        m.fc.weight.mul_(50)
        logits = m(to_model_input(torch.from_numpy(images))).flatten().sort().values
        m.fc.bias -= (logits[2] + logits[3]) / 2
    return m


def test_fixture_predicts_both_classes(model, images):
    with torch.inference_mode():
        logits = model(to_model_input(torch.from_numpy(images))).flatten()
    assert int((logits > 0).sum()) == 3


def formula_gradcam(model, images, targets):
    """ReLU(sum_c mean_ij(dS/dA_c) * A_c), S = logit for PNEUMONIA, -logit for NORMAL, from a plain full backward."""
    captured = {}
    handle = model.layer4.register_forward_hook(lambda module, inp, out: captured.update(a=out))
    try:
        x = to_model_input(torch.from_numpy(images), channels_last=False)
        logits = model(x).flatten()
        score = (logits * torch.tensor([1.0 if t else -1.0 for t in targets])).sum()
        (grads,) = torch.autograd.grad(score, captured["a"])
    finally:
        handle.remove()
    a = captured["a"].detach()
    return torch.relu((grads.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).numpy()


def test_raw_gradcam_maps_equal_the_formula_on_mixed_batches(model, images):
    ours = GradCAM(model, batch_size=4)(images, target="pred")  # batches of 4 and 2, each holding both classes
    assert set(ours.targets[:4].tolist()) == {0, 1} and set(ours.targets.tolist()) == {0, 1}
    expected = formula_gradcam(model, images, ours.targets)
    assert np.abs(ours.maps - expected).max() <= 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert expected.max() > 0


def library_gradcam(model, images, targets):
    from pytorch_grad_cam import GradCAM as LibGradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    x = to_model_input(torch.from_numpy(images), channels_last=False)
    with LibGradCAM(model=model, target_layers=[model.layer4]) as cam:
        return cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(int(t)) for t in targets])


@pytest.mark.parametrize("target", ["pred", "PNEUMONIA", "NORMAL"])
def test_gradcam_matches_pytorch_grad_cam(model, images, target):
    ours = GradCAM(model, batch_size=4)(images, target=target)
    assert ours.maps.shape == (6, 3, 3) and ours.maps.dtype == np.float32 and (ours.maps >= 0).all()
    theirs = library_gradcam(model, images, ours.targets)
    # The library normalises per image at feature resolution, resizes, then normalises again.
    comparable = normalise_per_image(upsample(normalise_per_image(ours.maps), 96))
    assert np.abs(comparable - theirs).max() < 1e-4


def test_targets_follow_the_prediction_or_the_fixed_class(model, images):
    result = GradCAM(model)(images, target="pred")
    assert np.array_equal(result.targets, (result.logits > 0).astype(np.int8))
    labels = np.array([0, 1, 0, 1, 0, 1])
    assert np.array_equal(GradCAM(model)(images, target="true", labels=labels).targets, labels)
    assert GradCAM(model)(images, target="NORMAL").targets.tolist() == [0] * 6
    with pytest.raises(ValueError, match="target must be one of"):
        resolve_targets("COVID", np.zeros(2), None)


def test_logits_equal_a_plain_forward_pass(model, images):
    result = GradCAM(model)(images)
    with torch.inference_mode():
        plain = model(to_model_input(torch.from_numpy(images))).flatten().double().numpy()
    assert np.allclose(result.logits, plain, atol=1e-5)


def test_explaining_leaves_the_model_as_it_was(model, images):
    model.zero_grad(set_to_none=True)  # the library comparisons above ran full backward passes
    model.train()
    model.layer4.requires_grad_(False)
    GradCAM(model)(images[:2])
    assert model.training and not model.layer4[0].conv1.weight.requires_grad and model.fc.weight.requires_grad
    model.layer4.requires_grad_(True)
    model.eval()
    assert model.layer4[0].conv1.weight.grad is None  # no weight gradients were computed


def test_hirescam_matches_library(model, images):
    from pytorch_grad_cam import HiResCAM as LibHiResCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    ours = HiResCAM(model)(images, target="PNEUMONIA")
    x = to_model_input(torch.from_numpy(images), channels_last=False)
    with LibHiResCAM(model=model, target_layers=[model.layer4]) as cam:
        theirs = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)] * 6)
    assert np.abs(normalise_per_image(upsample(normalise_per_image(ours.maps), 96)) - theirs).max() < 1e-4


@pytest.mark.parametrize("method, library_name", [("gradcam++", "GradCAMPlusPlus"), ("layercam", "LayerCAM")])
def test_native_gradcampp_and_layercam_are_raw_and_match_the_library(model, images, method, library_name):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    ours = make_cam(model, method, batch_size=4)(images, target="pred")
    assert not ours.normalised and ours.maps.shape == (6, 3, 3) and ours.method == method
    assert set(ours.targets.tolist()) == {0, 1}
    x = to_model_input(torch.from_numpy(images), channels_last=False)
    with getattr(pytorch_grad_cam, library_name)(model=model, target_layers=[model.layer4]) as cam:
        theirs = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(int(t)) for t in ours.targets])
    assert np.abs(normalise_per_image(upsample(normalise_per_image(ours.maps), 96)) - theirs).max() < 1e-4
    # Raw: not rescaled per image (a normalised map would peak at exactly 1 everywhere).
    peaks = ours.maps.reshape(6, -1).max(axis=1)
    assert not np.allclose(peaks[peaks > 0], 1.0)


def test_library_only_methods_are_marked_normalised(model, images):
    result = make_cam(model, "eigencam", batch_size=3)(images[:3])
    assert result.maps.shape == (3, 96, 96) and result.normalised and result.method == "eigencam"
    peaks = result.maps.reshape(3, -1).max(axis=1)
    assert np.allclose(peaks, 1.0, atol=1e-5)  # pytorch-grad-cam min-max scales every map to [0, 1]


def test_heatmaps_npz_holds_plain_arrays(tmp_path, model, images):
    result = GradCAM(model)(images)
    paths = [f"/data/ü näme {i}.png" for i in range(6)]
    threshold = float(np.median(result.probs))  # a threshold other than 0.5 that splits these films
    write_heatmaps(tmp_path / "heatmaps.npz", result, paths, np.array([0, 1] * 3), 96, threshold)
    data = read_heatmaps_checked(tmp_path / "heatmaps.npz", None)  # allow_pickle=False: fails on any object array
    assert data["paths"].dtype.kind == "U" and data["paths"].tolist() == paths
    assert data["maps"].dtype == np.float32 and data["maps"].shape == (6, 3, 3)
    assert np.array_equal(data["maps"], result.maps) and int(data["image_size"]) == 96
    assert set(data) >= {"labels", "probs", "preds", "targets", "method", "layer"}
    # preds are decided at the given threshold, stored beside them (p >= t written out by hand)
    assert float(data["threshold"]) == threshold
    assert data["preds"].tolist() == [int(p >= threshold) for p in result.probs.tolist()]


def test_upsample_equals_torch_bilinear_with_half_pixel_centres(rng):
    import torch
    import torch.nn.functional as F

    for maps, size in ((rng.random((3, 7, 7)), 224), (rng.random((2, 14, 14)), 96), (rng.random((1, 4, 4)), 64)):
        reference = F.interpolate(torch.tensor(maps, dtype=torch.float32)[:, None], size=(size, size), mode="bilinear")
        np.testing.assert_allclose(upsample(maps, size), reference[:, 0].numpy(), atol=1e-6)
