"""The domain-shift guard: its distance against scipy, its input checks by hand, and the known answers on a model
trained on the shared Kermany data."""

import numpy as np
import pytest
from PIL import Image

from pneumocam.model.guard import Guard, file_reason, image_reason
from pneumocam.train.guard_fit import fit_guard

from .conftest import KERMANY


def test_distance_is_scipys_mahalanobis_to_the_nearest_class_mean_with_ledoit_wolf_covariance():
    from scipy.spatial.distance import mahalanobis
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    train = rng.normal(size=(120, 5)) + labels[:, None] * 3.0
    val = rng.normal(size=(40, 5)) + np.repeat([0, 1], 20)[:, None] * 3.0
    guard = fit_guard(train, labels, val)
    means = [train[labels == c].mean(axis=0) for c in (0, 1)]
    precision = LedoitWolf(assume_centered=True).fit(train - np.stack(means)[labels]).precision_
    probe = rng.normal(size=(7, 5)) * 4
    expected = [min(mahalanobis(x, m, precision) for m in means) for x in probe]
    np.testing.assert_allclose(guard.distances(probe), expected, rtol=1e-9)
    val_expected = [min(mahalanobis(x, m, precision) for m in means) for x in val]
    assert guard.threshold == pytest.approx(np.quantile(val_expected, 0.95))
    assert sum(d <= guard.threshold for d in val_expected) == 38  # 95% of 40 validation rows pass


def test_assess_keeps_the_first_input_reason_and_otherwise_flags_far_features():
    guard = Guard(np.zeros((2, 2)), np.eye(2), threshold=2.0, fitted_on={})
    found = guard.assess(np.array([[1.0, 1.0], [3.0, 0.0], [0.0, 0.0]]), ["", "", "colour image"])
    assert [v.in_distribution for v in found] == [True, False, False]
    assert found[0].ood_score == pytest.approx(np.sqrt(2))
    assert found[1].ood_reason.startswith("features unlike the training films")
    assert found[2].ood_reason == "colour image"


def test_input_checks_by_hand(tmp_path):
    rng = np.random.default_rng(1)
    film = rng.integers(0, 255, (300, 250), dtype=np.uint8)
    cases = {
        "grey.png": (Image.fromarray(film), ""),
        "grey_as_rgb.jpeg": (Image.fromarray(film).convert("RGB"), ""),  # Kermany's JPEGs: RGB holding grey
        "colour.png": (Image.fromarray(rng.integers(0, 255, (300, 250, 3), dtype=np.uint8)), "colour image"),
        "strip.png": (Image.fromarray(film[:100]), "aspect ratio 250:100 unlike a chest film"),
        "thumb.png": (Image.fromarray(film[:50, :60]), "very small image (60x50 px)"),
    }
    for name, (image, reason) in cases.items():
        image.save(tmp_path / name)
        assert file_reason(tmp_path / name) == reason, name
    assert image_reason(np.full((64, 64), 90, np.uint8)) == "near-blank image"
    assert image_reason(film[:64, :64]) == ""


def test_an_input_check_that_cannot_read_the_file_flags_it_with_a_reason(tmp_path, monkeypatch):
    """Before, any failure inside the checks let the film pass silently ("")."""
    from PIL import Image as PILImage

    path = tmp_path / "grey.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (300, 250), dtype=np.uint8)).save(path)
    assert file_reason(path) == ""

    def broken(*args, **kwargs):
        raise OSError("cannot identify image file")

    monkeypatch.setattr(PILImage, "open", broken)
    assert file_reason(path) == "input checks could not read the file (OSError)"


def test_guard_fit_refits_the_guard_training_stored(tiny_checkpoint, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from pneumocam.cli.app import app
    from pneumocam.model.guard import load_guard

    copy = tmp_path / "model.pt"
    shutil.copy(tiny_checkpoint / "model.pt", copy)
    stored = load_guard(copy)
    from pneumocam.model.network import load_checkpoint

    plan = load_checkpoint(copy)[1]["data"]["validation"]  # the training's own count of the films it used
    assert (stored.fitted_on["n_train"], stored.fitted_on["n_val"]) == (plan["n_train_used"], plan["n_val_used"])
    result = CliRunner().invoke(app, ["guard", "fit", "--checkpoint", str(copy)])
    assert result.exit_code == 0, result.output
    refitted = load_guard(copy)
    assert refitted.threshold == pytest.approx(stored.threshold, rel=1e-4)
    for refit, part in zip(refitted.parts, stored.parts):
        np.testing.assert_allclose(refit.bank, part.bank, rtol=1e-4, atol=1e-4)


@pytest.mark.shared_data
def test_known_answers_on_a_model_trained_on_kermany(tmp_path):
    """Colour pictures, rotated and inverted films, near-blank images and phantoms are flagged (>= 95% each);
    at most 7% of the held-out patients' films are."""
    import skimage.data

    from pneumocam.data import Sample, discover, load_images, split_holdout
    from pneumocam.data.phantoms import make_phantom
    from pneumocam.evaluation.evaluate import predict
    from pneumocam.model.guard import load_guard
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    config = TrainConfig(
        data=str(KERMANY),
        mode="frozen",
        weights="none",
        image_size=128,
        epochs=1,
        max_per_class=150,
        holdout_fraction=0.15,
        val_source="carved",
        seed=0,
        use_cache=False,
    )
    run = fit(config, runs_dir=tmp_path / "runs")
    model, _ = load_checkpoint(run / "model.pt")
    guard = load_guard(run / "model.pt")
    held = split_holdout(discover(KERMANY), 0.15, 0)[1]
    held = [held[i] for i in sorted(np.random.default_rng(0).choice(len(held), 300, replace=False))]

    def flagged(samples):
        loaded = load_images(samples, 128, use_cache=False)
        assert len(loaded.samples) == len(samples)
        return np.array([not v.in_distribution for v in predict(model, loaded, guard=guard, assess=True).verdicts])

    def written(name, arrays):
        folder = tmp_path / name
        folder.mkdir()
        for i, array in enumerate(arrays):
            Image.fromarray(np.ascontiguousarray(array)).save(folder / f"{i}.png")
        return [Sample(str(folder / f"{i}.png"), 0, "probe", None) for i in range(len(arrays))]

    rng = np.random.default_rng(0)
    films = [np.asarray(Image.open(s.path).convert("L")) for s in held[:40]]
    colour = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat"]
    probes = {
        "colour pictures": written("colour", [getattr(skimage.data, n)() for n in colour]),
        "films rotated 90 degrees": written("rotated", [np.rot90(f) for f in films]),
        "inverted films": written("inverted", [255 - f for f in films]),
        "near-blank images": written(
            "blank",
            [np.clip(rng.normal(rng.uniform(0, 255), 2, (224, 224)), 0, 255).astype(np.uint8) for _ in range(20)],
        ),
        "phantoms": written("phantoms", [make_phantom(rng, i % 2, 224).image for i in range(40)]),
    }
    from pneumocam.model.guard import input_reasons

    for name, samples in probes.items():
        assert flagged(samples).mean() >= 0.95, name
    for name in ("films rotated 90 degrees", "inverted films", "phantoms"):
        # square grey films: the file and pixel checks pass them, so what flags them is the feature distance
        loaded = load_images(probes[name], 128, use_cache=False)
        assert input_reasons(loaded.paths, loaded.images) == [""] * len(loaded.paths), name
    assert flagged(held).mean() <= 0.07


def test_the_pooled_features_are_layer4s_then_layer2s_as_hooks_on_torchvisions_resnet50_see_them():
    """The guard's input laid out by `pooled_features`, against forward hooks on an untouched torchvision forward;
    the head read from its first columns gives the model's own logit, and Grad-CAM's pass keeps the same row."""
    import torch

    from pneumocam.explain.cam import GradCAM
    from pneumocam.model.forward import forward_pass
    from pneumocam.model.network import new_resnet50, pooled_columns, pooled_features

    torch.manual_seed(0)
    model = new_resnet50().eval()
    seen = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda _m, _i, out, name=name: seen.setdefault(name, out))
        for name in ("layer1", "layer2", "layer4")
    ]
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    from pneumocam.data import to_model_input

    x = to_model_input(torch.from_numpy(images))
    with torch.no_grad():
        logits = model(x).flatten()
        for hook in hooks:
            hook.remove()
        row = pooled_features(model, x)
    columns = pooled_columns(model)  # ResNet50's widths: layer4 2048, layer2 512, layer1 256 + 256, 8 x 8 thumbnail
    assert [columns[k] for k in ("layer4", "layer2", "layer1 means", "layer1 stds", "thumbnail", "layer1 moments")] == [
        (0, 2048), (2048, 2560), (2560, 2816), (2816, 3072), (3072, 3136), (2560, 3072)
    ]  # fmt: skip
    torch.testing.assert_close(row[:, :2048], seen["layer4"].mean(dim=(2, 3)))
    torch.testing.assert_close(row[:, 2048:2560], seen["layer2"].mean(dim=(2, 3)))
    torch.testing.assert_close(row[:, 2560:2816], seen["layer1"].mean(dim=(2, 3)))
    torch.testing.assert_close(row[:, 2816:3072], seen["layer1"].std(dim=(2, 3)))
    # the thumbnail by hand: 64 px input, 8 x 8 blocks of 8 x 8 pixels of its first channel, averaged
    blocks = x[:, 0].reshape(3, 8, 8, 8, 8).mean(dim=(2, 4)).reshape(3, 64)
    torch.testing.assert_close(row[:, 3072:], blocks)
    torch.testing.assert_close(model.fc(row[:, :2048]).flatten(), logits)
    found_logits, found = forward_pass(model, images, features=True)
    np.testing.assert_allclose(found, row.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(found_logits, logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(GradCAM(model)(images).features, row.numpy(), rtol=1e-4, atol=1e-5)


def test_a_pass_that_stops_early_keeps_the_early_columns_and_leaves_the_rest_nan():
    """deepest='layer1' and 'layer2' against forward hooks on the whole torchvision forward: the columns of the blocks
    run are the whole pass's, the others NaN, and the blocks past `deepest` never run (counted by hooks)."""
    import torch

    from pneumocam.data import to_model_input
    from pneumocam.model.network import new_resnet50, pooled_features

    torch.manual_seed(0)
    model = new_resnet50().eval()
    x = to_model_input(torch.from_numpy(np.random.default_rng(1).integers(0, 255, (2, 64, 64), dtype=np.uint8)))
    calls = {"layer2": 0, "layer3": 0, "layer4": 0}
    seen = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):

        def hook(_m, _i, out, name=name):
            seen[name] = out
            calls[name] = calls.get(name, 0) + 1

        getattr(model, name).register_forward_hook(hook)
    with torch.no_grad():
        layer1_only = pooled_features(model, x, deepest="layer1")
        assert calls == {"layer1": 1, "layer2": 0, "layer3": 0, "layer4": 0}
        torch.testing.assert_close(layer1_only[:, 2560:2816], seen["layer1"].mean(dim=(2, 3)))
        torch.testing.assert_close(layer1_only[:, 2816:3072], seen["layer1"].std(dim=(2, 3)))
        torch.testing.assert_close(
            layer1_only[:, 3072:], x[:, 0].reshape(2, 8, 8, 8, 8).mean(dim=(2, 4)).reshape(2, 64)
        )
        assert torch.isnan(layer1_only[:, :2560]).all() and not torch.isnan(layer1_only[:, 2560:]).any()
        through_layer2 = pooled_features(model, x, deepest="layer2")
        assert calls == {"layer1": 2, "layer2": 1, "layer3": 0, "layer4": 0}
        torch.testing.assert_close(through_layer2[:, 2048:2560], seen["layer2"].mean(dim=(2, 3)))
        assert torch.isnan(through_layer2[:, :2048]).all() and not torch.isnan(through_layer2[:, 2048:]).any()
        with pytest.raises(ValueError, match="deepest must be one of layer1, layer2, layer4"):
            pooled_features(model, x, deepest="layer3")
    from pneumocam.model.network import COLUMN_DEPTH, pooled_columns

    assert set(COLUMN_DEPTH) == set(pooled_columns(model))  # every part of a row names the block it needs


def test_the_guard_s_fit_runs_the_network_only_as_deep_as_its_parts_read(tiny_checkpoint, monkeypatch):
    """Format 4 reads layer1's moments and the thumbnail: the fit's feature pass never runs layer2 or deeper, and
    its rows equal the whole pass's on every column the guard reads (and a guard reads only its columns: below)."""
    import torch

    from pneumocam.data import prepare_data
    from pneumocam.model.inputs import ModelInputs
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.guard_fit import GUARD_PARTS, guard_features

    model, meta = load_checkpoint(tiny_checkpoint / "model.pt")
    assert set(GUARD_PARTS) == {"layer1 moments", "thumbnail"}  # what the depth below is chosen from
    prepared, _ = ModelInputs.of_training(TrainConfig(**meta["config"])).prepared(
        prepare_data(TrainConfig(**meta["config"]))
    )
    ran = []
    handle = model.layer2.register_forward_hook(lambda *_: ran.append(1))
    early = guard_features(model, prepared, 16, torch.device("cpu"))
    handle.remove()
    assert ran == []
    from pneumocam.model.forward import extract_features

    whole = [
        extract_features(model, part.images, 16, torch.device("cpu"), "whole", head_only=False)
        for part in (prepared.train, prepared.val)
    ]
    for found, full in zip(early, whole, strict=True):
        np.testing.assert_allclose(found[:, 2560:], full[:, 2560:], rtol=1e-5, atol=1e-6)
        assert torch.isnan(found[:, :2560]).all()


def test_a_guard_reads_only_its_columns_and_a_format_1_guard_reads_layer4s():
    """A guard of format 1 (before the depth was stored) read the whole 2048-d layer4 row, now the first columns."""
    import torch
    from scipy.spatial.distance import mahalanobis

    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 40)
    train = rng.normal(size=(80, 7)) + labels[:, None]
    val = rng.normal(size=(20, 7))
    guard = fit_guard(train, labels, val, columns=(4, 7), depth="layer2")
    sliced = fit_guard(train[:, 4:], labels, val[:, 4:])
    probe = rng.normal(size=(5, 7)) * 3
    means = [train[labels == c, 4:].mean(axis=0) for c in (0, 1)]
    expected = [min(mahalanobis(p[4:], m, sliced.precision) for m in means) for p in probe]
    np.testing.assert_allclose(guard.distances(probe), expected, rtol=1e-9)
    assert guard.threshold == pytest.approx(sliced.threshold)
    restored = Guard.from_state(guard.to_state())
    assert (restored.columns, restored.depth) == ((4, 7), "layer2")

    old = Guard.from_state(
        {
            "format_version": 1,
            "class_means": torch.zeros(2, 2, dtype=torch.float32),
            "precision": torch.eye(2, dtype=torch.float32),
            "threshold": 1.0,
            "fitted_on": {},
        }
    )
    assert (old.columns, old.depth) == ((0, 2), "layer4")
    assert old.distances(np.array([[3.0, 4.0, 100.0]]))[0] == pytest.approx(5.0)  # the third column is not read
    assert Guard.from_state({"format_version": 99}) is None


def test_a_trained_model_s_guard_sums_layer1_moments_and_the_thumbnail(tiny_checkpoint):
    from pneumocam.model.guard import CombinedGuard, NeighbourGuard, load_guard

    guard = load_guard(tiny_checkpoint / "model.pt")
    assert isinstance(guard, CombinedGuard) and guard.depth == "layer1 moments + thumbnail"
    assert all(isinstance(p, NeighbourGuard) for p in guard.parts)
    assert [p.columns for p in guard.parts] == [(2560, 3072), (3072, 3136)]
    assert [(p.scaling, p.k) for p in guard.parts] == [("standardised", 5), ("standardised", 5)]
    assert [p.bank.shape[1] for p in guard.parts] == [512, 64]


def test_a_neighbour_part_is_the_distance_to_the_kth_nearest_training_film_by_scipy():
    """Sun et al. 2022 by hand with scipy's cdist: unit-length rows (part A, k 3), columns standardised on the
    training rows (part B, k 1); the combined score as format 4 stored and read back."""
    from scipy.spatial.distance import cdist

    from pneumocam.model.guard import GUARD_FORMAT_VERSION, CombinedGuard
    from pneumocam.train.guard_fit import fit_combined_guard, fit_neighbour_guard

    rng = np.random.default_rng(7)
    train = rng.normal(size=(80, 9)) * np.arange(1, 10)  # columns of different spreads: standardising matters
    val, probe = rng.normal(size=(30, 9)) * np.arange(1, 10), rng.normal(size=(6, 9)) * 5
    a = fit_neighbour_guard(train, val, "unit length", 3, columns=(0, 4), depth="A")
    b = fit_neighbour_guard(train, val, "standardised", 1, columns=(4, 9), depth="B")

    def unit(x):
        return x[:, :4] / np.linalg.norm(x[:, :4], axis=1, keepdims=True)

    def standard(x):
        return (x[:, 4:] - train[:, 4:].mean(axis=0)) / train[:, 4:].std(axis=0)

    by_hand_a = np.sort(cdist(unit(probe), unit(train)), axis=1)[:, 2]  # the 3rd nearest
    by_hand_b = cdist(standard(probe), standard(train)).min(axis=1)
    np.testing.assert_allclose(a.distances(probe), by_hand_a, rtol=1e-9)
    np.testing.assert_allclose(b.distances(probe), by_hand_b, rtol=1e-9)
    assert a.threshold == pytest.approx(np.quantile(np.sort(cdist(unit(val), unit(train)), axis=1)[:, 2], 0.95))
    assert not np.allclose(by_hand_b, cdist(probe[:, 4:], train[:, 4:]).min(axis=1))  # the scaling changed it

    guard = fit_combined_guard([a, b], val)
    logs = [np.log(cdist(f(v), f(train))) for f, v in ((unit, val), (standard, val))]
    on_val = [np.sort(logs[0], axis=1)[:, 2], logs[1].min(axis=1)]
    expected = sum((np.log(d) - v.mean()) / v.std() for d, v in zip((by_hand_a, by_hand_b), on_val))
    np.testing.assert_allclose(guard.distances(probe), expected, rtol=1e-7)
    state = guard.to_state()
    assert state["format_version"] == GUARD_FORMAT_VERSION == 4
    restored = Guard.from_state(state)
    assert isinstance(restored, CombinedGuard) and restored.depth == "A + B"
    np.testing.assert_allclose(restored.distances(probe), expected, rtol=1e-4)


def test_a_neighbour_part_keeps_at_most_max_neighbours_training_films(monkeypatch):
    from pneumocam.model import guard as guard_module
    from pneumocam.train import guard_fit

    monkeypatch.setattr(guard_fit, "MAX_NEIGHBOURS", 50)
    rng = np.random.default_rng(2)
    train, val = rng.normal(size=(200, 3)), rng.normal(size=(20, 3))
    part = guard_fit.fit_neighbour_guard(train, val, "standardised", 5)
    assert part.bank.shape == (50, 3) and part.fitted_on["n_train"] == 50
    kept = (part.bank * part.scale + part.centre)[:, None, :]
    assert np.isclose(kept, train[None]).all(axis=2).any(axis=1).all()  # a subset of the training rows
    with pytest.raises(ValueError, match="scaling 'cosine'"):
        guard_module.NeighbourGuard(train, 5, "cosine", 1.0, {})


def test_a_combined_guard_sums_each_part_s_log_distance_standardised_on_validation():
    """By hand with scikit-learn: part A the first 4 columns as they are, part B the last 6 on 3 principal axes."""
    from scipy.spatial.distance import mahalanobis
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    from pneumocam.model.guard import CombinedGuard
    from pneumocam.train.guard_fit import fit_combined_guard

    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 50)
    train = rng.normal(size=(100, 10)) + labels[:, None] * 2.0
    val = rng.normal(size=(40, 10)) + np.repeat([0, 1], 20)[:, None] * 2.0
    probe = rng.normal(size=(6, 10)) * 3
    parts = [
        fit_guard(train, labels, val, columns=c, depth=n, components=k)
        for n, c, k in (("A", (0, 4), None), ("B", (4, 10), 3))
    ]
    guard = fit_combined_guard(parts, val)

    def distances(x, columns, components):
        fit, x = train[:, columns[0] : columns[1]], x[:, columns[0] : columns[1]]
        if components:
            pca = PCA(components, random_state=0).fit(fit)
            fit, x = pca.transform(fit), pca.transform(x)
        means = [fit[labels == c].mean(axis=0) for c in (0, 1)]
        precision = LedoitWolf(assume_centered=True).fit(fit - np.stack(means)[labels]).precision_
        return np.array([min(mahalanobis(row, m, precision) for m in means) for row in x])

    def score(x):
        total = 0
        for columns, components in (((0, 4), None), ((4, 10), 3)):
            on_val = np.log(distances(val, columns, components))
            total = total + (np.log(distances(x, columns, components)) - on_val.mean()) / on_val.std()
        return total

    np.testing.assert_allclose(guard.distances(probe), score(probe), rtol=1e-7)
    assert guard.threshold == pytest.approx(np.quantile(score(val), 0.95))
    state = guard.to_state()
    assert state["format_version"] == 3  # Mahalanobis parts: format 3, as a guard fitted before format 4 was
    restored = Guard.from_state(state)  # model.pt's state: float32 tensors
    assert isinstance(restored, CombinedGuard)
    np.testing.assert_allclose(restored.distances(probe), guard.distances(probe), rtol=1e-4)
    assert [v.in_distribution for v in guard.assess(probe)] == list(score(probe) <= guard.threshold)
