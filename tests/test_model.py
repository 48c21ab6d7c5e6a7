"""Weights loading (none / imagenet offline / local file / corrupt / wrong shapes), freeze policies, checkpoints."""

import hashlib

import pytest
import torch

from pneumocam.core.errors import CheckpointError, WeightsError
from pneumocam.model.network import (
    CHECKPOINT_VERSION,
    apply_mode,
    build_model,
    load_checkpoint,
    new_resnet50,
    save_checkpoint,
    set_train_mode,
)


@pytest.fixture(scope="module")
def imagenet_like_file(tmp_path_factory):
    """A torchvision-style ResNet50 file (1000-class head), named with its own sha256 prefix."""
    from torchvision.models import resnet50

    torch.manual_seed(11)
    state = resnet50(weights=None).state_dict()
    folder = tmp_path_factory.mktemp("weights")
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = folder / f"resnet50-{digest[:8]}.pth"
    tmp.rename(final)
    return final, state


def test_none_is_random_and_says_so():
    model, info = build_model("none", seed=1)
    assert info.source == "none" and info.is_random and "RANDOM" in info.description
    assert model.fc.out_features == 1 and hasattr(model, "layer4")
    again, _ = build_model("none", seed=1)
    assert torch.equal(model.conv1.weight, again.conv1.weight)  # seeded init is reproducible


def test_imagenet_offline_and_not_cached_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as err:
        build_model("imagenet", allow_download=False)
    message = str(err.value)
    assert "resnet50-11ad3fa6.pth" in message and str(tmp_path / "hub") in message and "--weights none" in message
    with pytest.raises(WeightsError, match="resnet50-0676ba61.pth"):
        build_model("imagenet-v1", allow_download=False)


def test_imagenet_from_the_hub_cache_loads_backbone_and_hash_checks(tmp_path, monkeypatch, imagenet_like_file):
    path, state = imagenet_like_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    cache = tmp_path / "hub" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    # The cached name carries torchvision's real hash, which our test file cannot match: a clear error.
    (cache / "resnet50-11ad3fa6.pth").write_bytes(path.read_bytes())
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub" / "hub"))
    with pytest.raises(WeightsError, match="sha256 starts with .* the name says 11ad3fa6"):
        build_model("imagenet", allow_download=False)


def test_local_file_loads_backbone_and_keeps_a_fresh_head(imagenet_like_file):
    path, state = imagenet_like_file
    model, info = build_model(str(path), seed=0)
    assert info.source == "file" and info.sha256.startswith(path.stem.split("-")[1])
    assert torch.equal(model.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert torch.equal(model.bn1.running_mean, state["bn1.running_mean"])
    assert model.fc.weight.shape == (1, 2048) and any("head" in n for n in info.notes)


def test_corrupted_file_is_refused(tmp_path, imagenet_like_file):
    path, _ = imagenet_like_file
    damaged = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="damaged"):
        build_model(str(damaged))
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(WeightsError, match="cannot read"):
        build_model(str(garbage))


def test_wrong_shapes_are_named(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "r18.pt"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="not a torchvision ResNet50 state_dict"):
        build_model(str(path))
    state = new_resnet50().state_dict()
    state["layer4.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"wrong shape.*layer4.0.conv1.weight: file \(3, 3, 1, 1\)"):
        build_model(str(tmp_path / "bad.pt"))


class Payload:
    """Any non-tensor class: weights_only loading must refuse to unpickle it."""


def test_pickled_objects_are_not_loaded(tmp_path):
    torch.save({"state_dict": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="cannot read"):
        build_model(str(tmp_path / "evil.pt"))


@pytest.mark.parametrize(
    "mode, trainable",
    [
        ("frozen", {"fc"}),
        ("partial", {"layer4", "fc"}),
        ("full", {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}),
    ],
)
def test_freeze_policies(mode, trainable):
    model = new_resnet50()
    params = apply_mode(model, mode)
    top = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert top == trainable and len(params) == sum(p.requires_grad for p in model.parameters())
    set_train_mode(model, mode)
    assert model.fc.training
    assert model.layer1.training == (mode == "full")
    assert model.layer4.training == (mode != "frozen")


def test_checkpoint_round_trip_and_version_check(tmp_path):
    model, _ = build_model("none", seed=3)
    save_checkpoint(tmp_path / "model.pt", model, {"image_size": 64, "thresholds": {"default": 0.5}})
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["image_size"] == 64 and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    obj = torch.load(tmp_path / "model.pt", weights_only=True)
    obj["format_version"] = CHECKPOINT_VERSION + 1
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 2"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a pneumocam checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("behaviour", ["silent", "refuse"])
def test_imagenet_download_offline_fails_fast_without_the_switch(tmp_path, monkeypatch, behaviour):
    """No PNEUMOCAM_OFFLINE: the download itself must fail within 30 s, against a host that accepts and never
    answers (a firewall that drops packets looks like this) and one that refuses connections."""
    import socket
    import threading
    import time

    from pneumocam.core.errors import WeightsError
    from pneumocam.model import network as model_module

    monkeypatch.delenv("PNEUMOCAM_OFFLINE", raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held = []
    if behaviour == "silent":
        server.listen(4)
        threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    else:
        server.close()  # nothing listens on the port: connection refused
    cache = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    monkeypatch.setattr(
        model_module,
        "imagenet_cache_file",
        lambda variant: (cache, f"http://127.0.0.1:{port}/models/resnet50-11ad3fa6.pth"),
    )
    began = time.perf_counter()
    with pytest.raises(WeightsError, match="--weights none"):
        model_module.build_model("imagenet")
    assert time.perf_counter() - began < 30
    assert not cache.exists()
    server.close()


def test_training_evaluate_and_run_read_a_lungs_model_the_same_way(phantom_data, tmp_path):
    """One ModelInputs: a --focus lungs model is shown each film as its training saw it, whether `evaluate` reads it
    (the lungs it trained on, recorded in model.pt) or `run` does with the same masks given as --lung-masks; a
    different lung source (the estimate, what `predict` and the viewer use on new films) gives other crops."""
    import numpy as np

    from pneumocam.data import discover, load_images
    from pneumocam.model.inputs import ModelInputs
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    masks = str(phantom_data.lung_masks)
    config = TrainConfig(
        data=str(phantom_data.images),
        weights="none",
        image_size=32,
        epochs=1,
        batch_size=16,
        val_source="dataset",
        focus="lungs",
        focus_masks=masks,
        use_cache=False,
    )
    _, meta = load_checkpoint(fit(config, runs_dir=tmp_path) / "model.pt")
    films = load_images(discover(phantom_data.images).split("test"), 32, use_cache=False)
    training = ModelInputs.of_training(config).read(films)
    evaluate = ModelInputs.of_checkpoint(meta).read(films)
    run = ModelInputs.of_checkpoint(meta).read(films, lung_masks=masks)
    estimated = ModelInputs(32, "lungs").read(films)
    for other in (evaluate, run):
        assert np.array_equal(other.images, training.images) and np.array_equal(other.boxes, training.boxes)
    assert not np.array_equal(estimated.boxes, training.boxes)  # the check can tell one lung source from another
    maps = np.random.default_rng(0).random((len(films.paths), 2, 2)).astype(np.float32)
    on_film = ModelInputs.of_training(config).on_film(maps, training.boxes)
    assert np.array_equal(ModelInputs.of_checkpoint(meta).on_film(maps, evaluate.boxes), on_film)
