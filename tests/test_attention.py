"""--attention-penalty: the differentiable Grad-CAM share outside the lungs equals pytorch-grad-cam's maps measured
by hand, its gradient moves the maps off the outside, and the masks follow the films through crop and augmentation."""

import numpy as np
import pytest
import torch

from pneumocam.anatomy.focus import crop_masks
from pneumocam.core.errors import SettingError
from pneumocam.data import Augmentation, to_model_input
from pneumocam.data.phantoms import make_phantom
from pneumocam.model.network import build_model
from pneumocam.train.attention import outside_share
from pneumocam.train.config import TrainConfig


@pytest.fixture(scope="module")
def films():
    rng = np.random.default_rng(0)
    phantoms = [make_phantom(rng, i % 2, 96) for i in range(4)]
    return np.stack([p.image for p in phantoms]), np.stack([p.lungs for p in phantoms])


@pytest.fixture
def model(films):
    m, _ = build_model("none", seed=4)
    m.eval()
    with torch.no_grad():  # spread the head so the maps are not all zero
        m.fc.weight.mul_(50)
    return m


def _share(model, images, masks, labels):
    captured = {}
    hook = model.layer4.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    try:
        logits = model(to_model_input(torch.from_numpy(images), channels_last=False)).flatten()
    finally:
        hook.remove()
    return outside_share(captured["a"], logits, torch.tensor(labels), torch.from_numpy(masks))


def test_outside_share_is_pytorch_grad_cams_mass_outside_the_lungs(model, films):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    images, lungs = films
    labels = [0, 1, 0, 1]
    ours = _share(model, images, lungs, labels).detach().numpy()
    x = to_model_input(torch.from_numpy(images), channels_last=False)
    with GradCAM(model=model, target_layers=[model.layer4]) as cam:
        cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(t) for t in labels])
        a = cam.activations_and_grads.activations[0].numpy()
        g = cam.activations_and_grads.gradients[0].numpy()
    raw = np.maximum((g.mean(axis=(2, 3), keepdims=True) * a).sum(axis=1), 0)  # (4, 3, 3) at 96 px
    lung_fraction = lungs.reshape(4, 3, 32, 3, 32).mean(axis=(2, 4))  # each 32x32 cell's lung share, by hand
    expected = (raw * (1 - lung_fraction)).sum(axis=(1, 2)) / raw.sum(axis=(1, 2))
    assert raw.sum(axis=(1, 2)).min() > 0 and 0.05 < expected.min() and expected.max() < 0.95  # informative maps
    assert ours == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_the_penalty_gradient_moves_the_maps_into_the_lungs(model, films):
    images, lungs = films
    labels = [0, 1, 0, 1]
    before = _share(model, images, lungs, labels).detach()
    optimizer = torch.optim.SGD(model.parameters(), lr=3e-4)  # small steps: larger ones overshoot to empty maps
    for _ in range(3):
        optimizer.zero_grad()
        _share(model, images, lungs, labels).mean().backward()
        optimizer.step()
    after = _share(model, images, lungs, labels).detach()
    assert float(after.mean()) < float(before.mean()) - 0.015 and bool((after <= before + 1e-6).all())


def test_an_empty_map_counts_as_all_outside(model, films):
    """Erasing the map must not be a way to zero the penalty."""
    images, lungs = films
    with torch.no_grad():
        model.fc.weight.zero_()  # every Grad-CAM weight zero: empty maps
    assert _share(model, images, lungs, [0, 1, 0, 1]).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_masks_follow_the_augmentation_and_leave_its_draws_unchanged():
    rng = np.random.default_rng(1)
    masks = torch.from_numpy((rng.random((3, 64, 64)) > 0.5).astype(np.uint8))
    images = masks * 255
    augment = Augmentation(contrast=0.0)
    alone = augment(images, torch.Generator().manual_seed(7))
    moved_images, moved_masks = augment(images, torch.Generator().manual_seed(7), masks)
    assert torch.equal(alone, moved_images)  # the same draws with or without masks
    assert torch.equal(moved_images, moved_masks * 255)  # the same geometry: mask and film still coincide
    assert not torch.equal(moved_masks, masks)


def test_crop_masks_cuts_and_resizes_like_the_film():
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 2:4, 4:8] = True  # the top-right quarter of the box below
    cropped = crop_masks(masks, np.array([[2, 6, 0, 8]]))  # rows 2..5, all columns: 4x8, resized to 8x8
    expected = np.zeros((8, 8), dtype=bool)
    expected[0:4, 4:8] = True
    assert np.array_equal(cropped[0], expected)


def test_penalty_settings_are_checked():
    with pytest.raises(SettingError, match="frozen"):
        TrainConfig(data="x", mode="frozen", attention_penalty=1.0, attention_masks="m")
    with pytest.raises(SettingError, match="needs lung masks"):
        TrainConfig(data="x", mode="full", attention_penalty=1.0)
    with pytest.raises(SettingError, match=">= 0"):
        TrainConfig(data="x", mode="full", attention_penalty=-1.0, attention_masks="m")


def test_input_gradient_share_is_the_squared_gradient_mass_outside_the_lungs(model, films):
    """Against a plain autograd input gradient, measured with numpy (masks pooled to the input by hand: same size)."""
    from pneumocam.train.attention import input_gradient_outside_share

    images, lungs = films
    labels = torch.tensor([0, 1, 0, 1])
    x = to_model_input(torch.from_numpy(images), channels_last=False).requires_grad_(True)
    logits = model(x).flatten()
    ours = input_gradient_outside_share(x, logits, labels, torch.from_numpy(lungs)).detach().numpy()
    y = to_model_input(torch.from_numpy(images), channels_last=False).requires_grad_(True)
    score = (model(y).flatten() * torch.tensor([-1.0, 1.0, -1.0, 1.0])).sum()
    (g,) = torch.autograd.grad(score, y)
    energy = (g.numpy() ** 2).sum(axis=1)
    expected = (energy * ~lungs).sum(axis=(1, 2)) / energy.sum(axis=(1, 2))
    assert 0.05 < expected.min() and expected.max() < 0.95
    assert ours == pytest.approx(expected, rel=1e-4)
    ours_tensor = input_gradient_outside_share(x, model(x).flatten(), labels, torch.from_numpy(lungs))
    (second,) = torch.autograd.grad(ours_tensor.sum(), model.fc.weight)  # differentiable: it can train the model
    assert float(second.abs().sum()) > 0


def test_the_penalty_leaves_ignore_pixels_out_of_both_parts_of_the_share():
    """One channel, logit = sum of layer4's 2x2 activations [[1, 2], [3, 4]]: every gradient is 1, so the map is
    the activations. Lungs: the top-left cell; ignore: the bottom-right cell. Outside share: (2 + 3) / (1 + 2 + 3),
    against (2 + 3 + 4) / 10 without the ignore layer."""
    activations = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    logits = activations.sum(dim=(1, 2, 3))
    lungs = torch.zeros(1, 4, 4, dtype=torch.bool)
    lungs[0, :2, :2] = True
    ignore = torch.zeros(1, 4, 4, dtype=torch.bool)
    ignore[0, 2:, 2:] = True
    targets = torch.tensor([1])
    assert float(outside_share(activations, logits, targets, lungs, ignore)) == pytest.approx(5 / 6)
    assert float(outside_share(activations, logits, targets, lungs)) == pytest.approx(9 / 10)
