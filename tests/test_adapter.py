"""A foreign classifier behind pneumocam's input and its one PNEUMONIA logit (model/adapter.py): the logit and the
film as the model reads it against hand-written preprocessing, Grad-CAM on its named layer against the formula and
pytorch-grad-cam, and one-line errors for a wrong layer or output."""

import numpy as np
import pytest
import torch
import torchvision

from pneumocam.core.errors import CheckpointError, SettingError
from pneumocam.data.transforms import to_model_input
from pneumocam.explain.cam import make_cam, normalise_per_image, upsample
from pneumocam.model.adapter import ClassifierAdapter, Reading, from_module, from_torchscript, from_torchvision

LABELS = ("Atelectasis", "Pneumonia", "Effusion")


@pytest.fixture(scope="module")
def films():
    """Four 64 px grey films (uint8), as the readers give them."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)


def pneumocam_input(films):
    return to_model_input(torch.from_numpy(films), channels_last=False)


def test_a_multi_label_model_gives_its_chosen_label_s_logit(films):
    net = torchvision.models.resnet18(num_classes=3).eval()
    adapter = from_module(net, output="Pneumonia", labels=LABELS, reading=Reading(64))
    film = torch.from_numpy(films).float()[:, None] / 255  # the hand-written preprocessing: [0, 1], ImageNet
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        by_hand = net((film.expand(-1, 3, -1, -1) - mean) / std)[:, 1]
        ours = adapter(pneumocam_input(films)).flatten()
    np.testing.assert_allclose(ours.numpy(), by_hand.numpy(), atol=1e-4)


def test_a_softmax_model_s_logit_is_its_class_against_the_others(films):
    net = torchvision.models.resnet18(num_classes=3).eval()
    adapter = from_module(net, output=1, activation="softmax", reading=Reading(64))
    with torch.no_grad():
        logit = adapter(pneumocam_input(films)).flatten()
        probs = torch.softmax(net((pneumocam_input(films))), dim=1)[:, 1]  # ImageNet reading: the same input
    np.testing.assert_allclose(torch.sigmoid(logit).numpy(), probs.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "reading, by_hand",
    [
        (Reading(64, 1, "unit"), lambda g: g),
        (Reading(64, 1, "xrv"), lambda g: (2 * g - 1) * 1024),  # TorchXRayVision's normalize(img, 255)
        (Reading(64, 3, lambda g: g * 10), lambda g: (g * 10).expand(-1, 3, -1, -1)),
    ],
)
def test_single_channel_and_xrv_models_read_the_film_as_written_by_hand(films, reading, by_hand):
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x.mean(dim=(1, 2, 3))[:, None]

    from_module(Recorder(), reading=reading)(pneumocam_input(films))
    expected = by_hand(torch.from_numpy(films).float()[:, None] / 255)
    np.testing.assert_allclose(seen["x"].numpy(), expected.numpy(), atol=1e-3 * max(1.0, float(expected.abs().max())))


def test_densenet_gradcam_on_its_named_layer_equals_the_formula_and_pytorch_grad_cam(films):
    from pytorch_grad_cam import GradCAM as LibGradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    torch.manual_seed(0)
    net = torchvision.models.densenet121(num_classes=1).eval()
    adapter = from_module(net, layer="features.denseblock4", reading=Reading(64))
    # NORMAL's map (minus the logit): this random network's PNEUMONIA maps are all zero after the ReLU
    ours = make_cam(adapter, "gradcam", layer=adapter.layer, batch_size=2)(films, target="NORMAL")
    assert ours.features.shape == (4, 1024) and ours.maps.shape == (4, 2, 2)  # features: the layer pooled (a guard)
    captured = {}
    handle = adapter.get_submodule(adapter.layer).register_forward_hook(lambda m, i, out: captured.update(a=out))
    logits = adapter(pneumocam_input(films)).flatten()
    handle.remove()
    (grads,) = torch.autograd.grad(-logits.sum(), captured["a"])
    formula = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * captured["a"]).sum(dim=1)).detach().numpy()
    assert formula.max() > 0 and np.abs(ours.maps - formula).max() <= 1e-5 * max(1.0, float(np.abs(formula).max()))
    with LibGradCAM(model=adapter, target_layers=[adapter.get_submodule(adapter.layer)]) as cam:
        theirs = cam(input_tensor=pneumocam_input(films), targets=[BinaryClassifierOutputTarget(0)] * 4)
    comparable = normalise_per_image(upsample(normalise_per_image(ours.maps), 64))
    assert np.abs(comparable - theirs).max() < 1e-4 and not adapter.training  # explaining leaves it in eval mode


def test_a_wrong_layer_or_output_is_one_line_naming_the_valid_ones():
    net = torchvision.models.resnet18(num_classes=3)
    with pytest.raises(SettingError) as layer:
        ClassifierAdapter(net, layer="layer9")
    with pytest.raises(SettingError) as output:
        ClassifierAdapter(net, output="Pneumothorax", labels=LABELS)
    assert "\n" not in str(layer.value) and "layer4" in str(layer.value) and "layer1.0" in str(layer.value)
    assert "\n" not in str(output.value) and "Atelectasis, Pneumonia, Effusion" in str(output.value)


def test_torchvision_and_torchscript_files_load_and_bad_files_are_one_line(tmp_path, films):
    net = torchvision.models.resnet18(num_classes=1).eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    loaded = from_torchvision("resnet18", tmp_path / "weights.pt", 1, reading=Reading(64))
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 64, 64)), tmp_path / "model.ts")
    scripted = from_torchscript(tmp_path / "model.ts", reading=Reading(64))
    with torch.no_grad():
        expected = net(pneumocam_input(films)).flatten()
        for adapter in (loaded, scripted):
            np.testing.assert_allclose(adapter(pneumocam_input(films)).flatten().numpy(), expected.numpy(), atol=1e-5)
    with pytest.raises(CheckpointError, match="cannot load"):
        from_torchvision("resnet18", tmp_path / "weights.pt", 3)  # 3 outputs: the head's shape differs
    (tmp_path / "junk.ts").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="as TorchScript"):
        from_torchscript(tmp_path / "junk.ts")


def test_a_torchxrayvision_model_by_name_offline(monkeypatch, tmp_path, films):
    pytest.importorskip("torchxrayvision")
    from pneumocam.model.adapter import from_xrv

    monkeypatch.setenv("HOME", str(tmp_path))  # an empty TorchXRayVision cache
    monkeypatch.setenv("PNEUMOCAM_OFFLINE", "1")
    with pytest.raises(CheckpointError) as missing:
        from_xrv("densenet121-res224-all")
    assert "densenet121" in str(missing.value) and ".torchxrayvision" in str(missing.value)
    adapter = from_xrv("densenet121-res224-all", weights=False)  # the architecture, random weights
    assert adapter.labels[adapter.index] == "Pneumonia" and adapter.reading == Reading(224, 1, "xrv")
    big = np.repeat(np.repeat(films, 4, axis=1), 4, axis=2)[:2]  # 256 px: resized to the model's 224 by hand
    big = torch.nn.functional.interpolate(torch.from_numpy(big).float()[:, None], size=224, mode="bilinear")
    big = big.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    with torch.no_grad():
        logit = adapter(pneumocam_input(big)).flatten()
        by_hand = adapter.net((2 * torch.from_numpy(big).float()[:, None] / 255 - 1) * 1024)[:, adapter.index]
    np.testing.assert_allclose(logit.numpy(), by_hand.numpy(), atol=1e-3)
