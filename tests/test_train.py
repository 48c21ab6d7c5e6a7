"""Training and evaluation end to end: real data reaches AUC above chance, resume is exact, order is irrelevant."""

import json

import numpy as np
import pytest
import torch

from pneumocam.core.outputs import is_complete
from pneumocam.data import discover, load_images
from pneumocam.evaluation.evaluate import evaluate_split, predict
from pneumocam.model.network import load_checkpoint
from pneumocam.model.session import InferenceSession
from pneumocam.train.config import TrainConfig
from pneumocam.train.fit import fit
from pneumocam.train.loop import class_weight_vector

from .conftest import KERMANY


@pytest.mark.shared_data
def test_frozen_training_on_real_images_beats_chance(tmp_path):
    config = TrainConfig(
        data=str(KERMANY), mode="frozen", weights="none", image_size=64, epochs=10, max_per_class=150, seed=0
    )
    run = fit(config, runs_dir=tmp_path)
    assert is_complete(run)
    summary = json.loads((run / "train_summary.json").read_text())
    best = max(row["val_auc"] for row in summary["history"])
    assert best > 0.75, summary["history"]
    _, meta = load_checkpoint(run / "model.pt")
    assert meta["weights"]["source"] == "none" and meta["mode"] == "frozen" and meta["image_size"] == 64
    assert meta["data"]["validation"]["source"] == "carved" and meta["data"]["validation"]["shared_patients"] == 0
    assert 0 < meta["thresholds"]["youden_val"] < 1 and torch.__version__.startswith(meta["versions"]["torch"])
    assert len(meta["data"]["fingerprint"]) == 16


def _train_state(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize(("mode", "ema"), [("frozen", 0.0), ("full", 0.0), ("full", 0.8)])
def test_interrupt_and_resume_gives_the_same_weights(tmp_path, phantom_data, mode, ema):
    config = TrainConfig(
        data=str(phantom_data.images),
        mode=mode,
        weights="none",
        image_size=32,
        epochs=3,
        batch_size=8,
        max_per_class=10,
        augment=(mode == "full"),
        val_source="dataset",
        seed=5,
        ema=ema,
    )
    straight = fit(config, runs_dir=tmp_path / "a")
    interrupted = fit(config, runs_dir=tmp_path / "b", stop_after_epoch=1)
    assert not is_complete(interrupted)
    resumed = fit(config, run_dir=interrupted, resume=True)
    assert resumed == interrupted and is_complete(resumed)
    a, b = _train_state(straight), _train_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    averages = [torch.load(r / "checkpoints" / "last.pt", weights_only=True)["ema"] for r in (straight, resumed)]
    assert (averages[0] is None) == (ema == 0.0)
    if ema:
        assert all(torch.equal(averages[0][k], averages[1][k]) for k in averages[0])

    def history(run):
        return [
            (r["train_loss"], r["val_auc"], r.get("ema_val_auc"))
            for r in json.loads((run / "history.json").read_text())
        ]

    assert history(straight) == history(resumed)


def test_balanced_class_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 13 + [1] * 40)
    ours = class_weight_vector(labels, "balanced").numpy()
    assert np.allclose(ours, compute_class_weight("balanced", classes=np.array([0, 1]), y=labels))


def test_shuffling_the_loader_cannot_change_metrics(tmp_path, phantom_data):
    from pneumocam.model.network import build_model

    model, _ = build_model("none", seed=0)
    loaded = load_images(discover(phantom_data.images).split("test"), 32)
    straight = predict(model, loaded, batch_size=5)
    shuffled = predict(model, loaded, batch_size=5, shuffle_seed=3)
    assert straight.paths == shuffled.paths and np.array_equal(straight.labels, shuffled.labels)
    assert np.allclose(straight.probs, shuffled.probs, atol=1e-6)
    label_of = {s.path: s.label for s in loaded.samples}
    assert all(label_of[p] == l for p, l in zip(shuffled.paths, shuffled.labels))


def test_evaluate_needs_only_the_split_it_reads(tmp_path, phantom_data):
    import shutil

    from pneumocam.model.network import build_model

    only_test = tmp_path / "only-test"
    shutil.copytree(phantom_data.images / "test", only_test / "test")
    model, info = build_model("none", seed=0)
    meta = {"image_size": 32, "weights": info.to_dict(), "thresholds": {"youden_val": 0.4}}
    result = evaluate_split(
        InferenceSession.of_model(model, meta), str(only_test), "test", tmp_path / "eval", bootstrap_resamples=50
    )
    assert set(result["metrics"]) == {"threshold_0.5", "threshold_youden_val"}
    rows = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()
    header = "path,label,prob_pneumonia,pred,pred_at_0.5,threshold,patient_id,in_distribution,ood_score,ood_reason"
    assert rows[0] == header and len(rows) == 17
    assert result["metrics"]["threshold_0.5"]["n"] == 16


def test_weighted_sampler_implies_no_loss_weights_and_refuses_both():
    from pneumocam.core.errors import PneumocamError

    assert TrainConfig(data="x", weighted_sampler=True).class_weights == "none"
    assert TrainConfig(data="x").class_weights == "balanced"
    with pytest.raises(PneumocamError, match="correct the imbalance twice"):
        TrainConfig(data="x", weighted_sampler=True, class_weights="balanced")


def test_validation_loss_is_the_class_weighted_objective(phantom_data):
    """--select-by loss selects on what training minimises: mean over images of w_class * BCE, written out here."""
    from pneumocam.model.network import build_model
    from pneumocam.train.loop import validate

    model, _ = build_model("none", seed=0)
    val = load_images(discover(phantom_data.images).split("test"), 32, use_cache=False)
    from pneumocam.model.forward import predict_logits

    logits = predict_logits(model.eval(), val.images, 8)
    with torch.no_grad():  # logits centred and scaled to about +-2: spread, but no probability saturates
        model.fc.weight.div_(float(logits.std()) / 2)
        model.fc.bias.copy_((model.fc.bias - float(logits.mean())) / (float(logits.std()) / 2))
    config = TrainConfig(data=str(phantom_data.images), image_size=32, batch_size=8)
    weights = torch.tensor([3.0, 0.6])
    metrics, logits = validate(model, val, None, config, torch.device("cpu"), weights)
    y = val.labels
    p = 1 / (1 + np.exp(-logits))
    assert 1e-6 < p.min() and p.max() < 1 - 1e-6 and p.std() > 1e-3
    expected = np.mean(np.where(y == 1, 0.6, 3.0) * -(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_resume_refuses_changed_data(tmp_path, phantom_data):
    import shutil

    from pneumocam.core.errors import CheckpointError

    data = tmp_path / "data"
    shutil.copytree(phantom_data.images, data)
    config = TrainConfig(
        data=str(data),
        mode="frozen",
        weights="none",
        image_size=32,
        epochs=3,
        batch_size=8,
        val_source="dataset",
        seed=5,
        use_cache=False,
    )
    run = fit(config, runs_dir=tmp_path / "runs", stop_after_epoch=1)
    extra = next((data / "train" / "NORMAL").glob("*.png"))
    shutil.copy(extra, extra.with_name("phantom-99999-1.png"))
    with pytest.raises(CheckpointError, match="training data changed"):
        fit(None, run_dir=run, resume=True)
    assert not is_complete(run)


def test_resume_refuses_settings_that_differ_from_the_run(tmp_path, phantom_data):
    from typer.testing import CliRunner

    from pneumocam.cli.app import app

    config = TrainConfig(
        data=str(phantom_data.images),
        mode="frozen",
        weights="none",
        image_size=32,
        epochs=3,
        batch_size=8,
        val_source="dataset",
        seed=5,
    )
    run = fit(config, runs_dir=tmp_path / "runs", stop_after_epoch=1)
    runner = CliRunner()
    changed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "5", "--lr", "0.1"])
    assert (
        changed.exit_code == 2
        and "epochs: given 5, the run has 3" in changed.output
        and "lr: given 0.1" in changed.output
    )
    same = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3", "--seed", "5"])
    assert same.exit_code == 0, same.output
    assert is_complete(run)


def test_frozen_runs_report_the_random_feature_control(tmp_path, phantom_data):
    """A 'pretrained' file (here: another seed's weights) gets the same head trained on random features beside it;
    with random weights the summary says the model is that control."""
    from torchvision.models import resnet50

    torch.manual_seed(11)
    torch.save(resnet50(weights=None).state_dict(), tmp_path / "weights.pth")
    config = TrainConfig(
        data=str(phantom_data.images),
        mode="frozen",
        weights=str(tmp_path / "weights.pth"),
        image_size=32,
        epochs=2,
        batch_size=16,
        val_source="dataset",
        seed=3,
        use_cache=False,
    )
    run = fit(config, runs_dir=tmp_path / "a")
    summary = json.loads((run / "train_summary.json").read_text())
    control = summary["control"]
    assert (
        control["epochs"] == 2 and control["model_val_auc"] == summary["history"][summary["best_epoch"] - 1]["val_auc"]
    )
    # The control is the same head on seed-3 random features: recompute it with a plain frozen run of random weights.
    random_run = fit(TrainConfig(**(config.to_dict() | {"weights": "none"})), runs_dir=tmp_path / "b")
    history = json.loads((random_run / "train_summary.json").read_text())["history"]
    assert control["val_auc"] in [h["val_auc"] for h in history]
    assert (
        "is itself the random-feature control" in json.loads((random_run / "train_summary.json").read_text())["control"]
    )


def test_progressive_resizing_schedule_is_checked_and_only_final_size_epochs_are_kept(tmp_path, phantom_data):
    from pneumocam.core.errors import PneumocamError
    from pneumocam.model.network import load_checkpoint

    for bad in ("64:3", "32:1,64:2", "x:1,64:1", "16:1,64:1", "64:1,32:1"):
        with pytest.raises(PneumocamError, match="size_schedule"):
            TrainConfig(data="x", mode="full", epochs=2, image_size=64, size_schedule=bad)
    with pytest.raises(PneumocamError, match="not frozen"):
        TrainConfig(data="x", mode="frozen", epochs=2, image_size=64, size_schedule="32:1,64:1")
    config = TrainConfig(
        data=str(phantom_data.images),
        mode="full",
        weights="none",
        image_size=64,
        epochs=3,
        batch_size=16,
        size_schedule="32:2,64:1",
        val_source="dataset",
        seed=1,
        max_per_class=8,
        use_cache=False,
    )
    assert config.sizes == [32, 32, 64]
    run = fit(config, runs_dir=tmp_path)
    history = json.loads((run / "history.json").read_text())
    assert [h["image_size"] for h in history] == [32, 32, 64]
    _, meta = load_checkpoint(run / "model.pt")
    assert meta["epoch"] == 3 and meta["image_size"] == 64


def test_resized_images_equal_torch_antialiased_bilinear(phantom_data):
    import torch.nn.functional as F

    from pneumocam.data import resized

    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    small = resized(loaded, 40)
    reference = (
        F.interpolate(
            torch.from_numpy(np.array(loaded.images)).float().unsqueeze(1),
            size=(40, 40),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        .squeeze(1)
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        .numpy()
    )
    assert small.images.shape == (16, 40, 40) and np.array_equal(small.images, reference)
    assert [s.path for s in small.samples] == [s.path for s in loaded.samples] and resized(loaded, 64) is loaded


def test_checkpoint_temperature_is_applied_on_load(tmp_path):
    from pneumocam.model.network import build_model, load_checkpoint, save_checkpoint

    model, _ = build_model("none", seed=2)
    save_checkpoint(tmp_path / "m.pt", model, {"calibration": {"method": "temperature", "temperature": 2.5}})
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), model.eval()(x) / 2.5, atol=1e-5)


def test_weight_average_follows_the_ema_formula():
    """The average starts at the first step's weights: after steps to w1, w2 it is d * w1 + (1 - d) * w2."""
    from pneumocam.train.loop import weight_average

    layer = torch.nn.Linear(2, 1)
    averaged = weight_average(layer, 0.9)
    steps = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]])]
    for w in steps:
        with torch.no_grad():
            layer.weight.copy_(w)
        averaged.update_parameters(layer)
    expected = 0.9 * steps[0] + 0.1 * steps[1]
    torch.testing.assert_close(averaged.module.weight, expected)


def test_the_start_estimate_leaves_the_model_and_the_random_draws_untouched(phantom_data):
    """It times a step on a copy: the model's weights and BatchNorm statistics and torch's random state stay as
    they were (a step in train mode on the model itself would move the BatchNorm running means)."""
    import torch

    from pneumocam.data import discover, load_images
    from pneumocam.model.network import apply_mode, build_model
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import estimate_at_start

    config = TrainConfig(
        data=str(phantom_data.images),
        mode="full",
        weights="none",
        image_size=64,
        epochs=2,
        batch_size=8,
        size_schedule="32:1,64:1",
    )
    model, _ = build_model("none", seed=0)
    apply_mode(model, "full")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    images = load_images(discover(phantom_data.images).split("train")[:8], 64, use_cache=False).images
    seconds = estimate_at_start(model, config, images, n_val=4, first=0, device=torch.device("cpu"))
    assert seconds > 0 and torch.equal(rng, torch.get_rng_state())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_each_select_by_picks_the_epoch_its_rule_names():
    """Three validation rows, written so that each rule picks a different epoch (by hand: the highest AUC is epoch 1,
    the highest AUC + accuracy epoch 2, the lowest loss epoch 3)."""
    from pneumocam.train.config import SELECT_BY
    from pneumocam.train.loop import selection_score

    rows = [
        {"val_auc": 0.95, "val_acc": 0.60, "val_loss": 0.50},
        {"val_auc": 0.93, "val_acc": 0.90, "val_loss": 0.40},
        {"val_auc": 0.90, "val_acc": 0.85, "val_loss": 0.30},
    ]
    picked = {rule: max(range(3), key=lambda i: selection_score(rows[i], rule)) + 1 for rule in SELECT_BY}
    assert picked == {"auc": 1, "auc_acc": 2, "loss": 3}


def test_label_smoothing_pulls_the_targets_towards_one_half():
    """BCE against y (1 - e) + e / 2, written out: e = 0.2 makes the targets 0.9 and 0.1."""
    from pneumocam.train.loop import weighted_loss

    logits, targets, weights = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([1, 0, 0]), torch.tensor([2.0, 0.5])
    p = 1 / (1 + np.exp(-np.array([0.3, -1.2, 2.0])))
    soft, w = np.array([0.9, 0.1, 0.1]), np.array([0.5, 2.0, 2.0])
    expected = np.mean(w * -(soft * np.log(p) + (1 - soft) * np.log(1 - p)))
    assert float(weighted_loss(logits, targets, weights, smoothing=0.2)) == pytest.approx(expected, rel=1e-6)
    hard = np.mean(w * -(np.array([1, 0, 0]) * np.log(p) + np.array([0, 1, 1]) * np.log(1 - p)))
    assert float(weighted_loss(logits, targets, weights)) == pytest.approx(hard, rel=1e-6) != expected
    with pytest.raises(Exception, match="label_smoothing"):
        TrainConfig(data="x", label_smoothing=1.0)


def test_acquisition_augmentation_is_a_gamma_curve_a_sharpness_and_noise():
    """Geometry and contrast off, sharpness fixed at 1 and no noise: each output is 255 (x / 255) ** gamma for one
    gamma per image inside the range (the power law, written here); noise alone on a flat image spreads it by at most
    its sigma; acquisition needs --augment."""
    from pneumocam.data import Augmentation

    ramp = torch.linspace(0, 255, 256).round().to(torch.uint8).reshape(1, 16, 16).repeat(8, 1, 1)
    plain = dict(degrees=0.0, translate=0.0, scale=(1.0, 1.0), contrast=0.0)
    curved = Augmentation(**plain, acquisition=True, gamma_range=2.0, sharpness=(1.0, 1.0), noise_sigma=0.0)
    out = curved(ramp, torch.Generator().manual_seed(3)).float()
    x = ramp[0].float() / 255
    gammas = []
    for image in out:
        middle = (x > 0.2) & (x < 0.8)
        gamma = float(np.median(np.log(image[middle] / 255) / np.log(x[middle])))
        assert 0.5 - 1e-3 <= gamma <= 2.0 + 1e-3
        assert torch.allclose(image, (255 * x**gamma).round(), atol=1.0)
        gammas.append(gamma)
    assert np.ptp(gammas) > 0.2  # the draws differ between images
    flat = torch.full((8, 16, 16), 128, dtype=torch.uint8)
    noisy = Augmentation(**plain, acquisition=True, gamma_range=1.0, sharpness=(1.0, 1.0), noise_sigma=10.0)
    spread = noisy(flat, torch.Generator().manual_seed(0)).float().std(dim=(1, 2))
    assert (spread > 0.5).sum() >= 6 and float(spread.max()) < 10 * 1.3
    # without acquisition the random stream is the one runs made before it existed
    before = Augmentation()(ramp, torch.Generator().manual_seed(5))
    assert torch.equal(before, Augmentation(acquisition=False)(ramp, torch.Generator().manual_seed(5)))
    with pytest.raises(Exception, match="--augment"):
        TrainConfig(data="x", acquisition_augment=True)


def test_members_with_one_split_seed_share_their_held_out_and_validation_films(phantom_data):
    """--split-seed: seeds 0 and 1 with split seed 0 hold out and validate on the same films; without it they do not
    (counted on the phantom set)."""
    from pneumocam.data.prepare import prepare_data

    def parts(**seeds):
        config = TrainConfig(
            data=str(phantom_data.images), image_size=32, holdout_fraction=0.2, val_source="carved", **seeds
        )
        prepared = prepare_data(config)
        return set(prepared.val.paths), set(prepared.train.paths), prepared.validation_plan["holdout_seed"]

    val0, train0, held0 = parts(seed=0)
    val1, train1, held1 = parts(seed=1, split_seed=0)
    assert (val0, train0) == (val1, train1) and held0 == held1 == 0
    val2, train2, _ = parts(seed=1)
    assert val2 != val0 and train2 != train0


def test_the_batch_thread_trains_exactly_what_one_loop_trains(monkeypatch):
    """Batches made one ahead in a thread (train.loop.prefetched) give the same weights as batches made in turn: the
    augmentation's random stream is drawn in the same order."""
    import pneumocam.train.loop as loop
    from pneumocam.data.phantoms import make_phantom
    from pneumocam.model.network import build_model
    from pneumocam.train.config import TrainConfig

    rng = np.random.default_rng(0)
    films = np.stack([make_phantom(rng, i % 2, 32).image for i in range(24)])
    labels = np.arange(24) % 2
    config = TrainConfig(data="-", mode="full", weights="none", image_size=32, epochs=1, batch_size=8, augment=True)
    trained = []
    for depth in (0, 2):
        monkeypatch.setattr(loop, "PREFETCH", depth)
        model, _ = build_model("none", seed=0)
        optimizer = loop.make_optimizer(model.parameters(), config)
        step = loop.Optimisation(model, optimizer, torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0))
        data = loop.EpochData(films, labels, loop.class_weight_vector(labels, "balanced"))
        loop.train_one_epoch(step, data, config, 0, torch.device("cpu"))
        trained.append(model.fc.weight.detach().clone())
    assert torch.equal(trained[0], trained[1]) and not torch.equal(trained[0], build_model("none", seed=0)[0].fc.weight)


def test_prefetched_keeps_the_order_and_raises_the_producer_s_error():
    from pneumocam.train.loop import prefetched

    assert list(prefetched(iter(range(10)), 2)) == list(range(10))

    def broken():
        yield 1
        raise ValueError("bad film")

    found = prefetched(broken(), 2)
    assert next(found) == 1
    with pytest.raises(ValueError, match="bad film"):
        next(found)


def test_each_epoch_records_its_training_seconds_apart_from_validating(tmp_path, phantom_data, monkeypatch):
    """Training and validating made slow by known amounts (0.4 s per epoch's training, 0.6 s per validation): the
    history's train_seconds holds the first and not the second, and the epoch's seconds both."""
    import time

    import pneumocam.train.fit as fitting

    def slowed(function, seconds):
        def wrapper(*args, **kwargs):
            time.sleep(seconds)
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(fitting, "train_one_epoch", slowed(fitting.train_one_epoch, 0.4))
    monkeypatch.setattr(fitting, "validate", slowed(fitting.validate, 0.6))
    config = TrainConfig(
        data=str(phantom_data.images), mode="frozen", weights="none", image_size=32, epochs=2, batch_size=16,
        val_source="dataset", use_cache=False,
    )  # fmt: skip
    history = json.loads((fit(config, runs_dir=tmp_path) / "history.json").read_text())
    assert len(history) == 2
    for row in history:
        assert row["train_seconds"] >= 0.4 and row["seconds"] - row["train_seconds"] >= 0.6, row
