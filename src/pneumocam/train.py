"""The training recipe: train_one_epoch, validate, fit(config). Library pieces live in data/ and model.py.

Faithful defaults: batch 32, 10 epochs, 224 px, frozen ImageNet backbone with a dense head. In frozen
mode the pooled features are computed once (BatchNorm in eval, no augmentation), so ten head epochs
cost about one backbone pass. Every epoch writes a resumable state; the best epoch on the validation
split (AUC or loss) becomes model.pt. The same seed gives the same weights, resumed or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pneumocam.calibration import calibrate
from pneumocam.config import TrainConfig
from pneumocam.data import Augmentation, LoadedImages, PreparedData, prepare_data, resized, to_model_input
from pneumocam.distributed import SINGLE, Distributed, init_distributed
from pneumocam.errors import CheckpointError, DataError, SettingError
from pneumocam.evaluate import predict_logits
from pneumocam.leakage import inherit_seen, seen_record
from pneumocam.metrics import youden_threshold
from pneumocam.model import (
    apply_mode,
    backbone_features,
    build_model,
    probability,
    resolve_device,
    save_checkpoint,
    set_train_mode,
)
from pneumocam.outputs import mark_complete, new_run_folder, write_json, write_skipped
from pneumocam.precision import autocast, resolve_precision
from pneumocam.progress import new_progress
from pneumocam.provenance import environment, library_versions
from pneumocam.train_state import checkpoint_metadata, load_train_state, resumable_config, save_train_state

console = Console(highlight=False)


def class_weight_vector(labels: np.ndarray, policy: str) -> torch.Tensor:
    """Per-class loss weights; 'balanced' is scikit-learn's n / (2 * n_c)."""
    if policy == "none":
        return torch.ones(2)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return torch.tensor(len(labels) / (2.0 * counts), dtype=torch.float32)


def weighted_loss(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor, share: float = 1.0
) -> torch.Tensor:
    """Class-weighted BCE, the mean over the batch. share: this process's rows are part of a global batch of
    len(logits) / share rows (DDP); the sum is scaled so that DDP's gradient average is the global batch mean."""
    weights = class_weights.to(logits.device)[targets.long()]
    if share == 1.0:
        return F.binary_cross_entropy_with_logits(logits, targets.float(), weight=weights)
    total = F.binary_cross_entropy_with_logits(logits, targets.float(), weight=weights, reduction="sum")
    return total * share / max(1, len(logits))


def epoch_order(
    n: int, labels: np.ndarray, seed: int, epoch: int, weighted_sampler: bool
) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's sample order and the generator for its augmentation, both fixed by (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weighted_sampler:
        per_class = 1.0 / np.bincount(labels, minlength=2)
        order = torch.multinomial(torch.tensor(per_class[labels]), n, replacement=True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator)
    return order, generator


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    description: str,
    dist: Distributed = SINGLE,
) -> torch.Tensor:
    """Pooled backbone features for every image (BatchNorm in eval): the frozen mode's one backbone pass.
    Under torchrun each process computes its part and all receive the whole."""
    model.eval()
    mine = dist.part(len(images))
    out = torch.empty(len(mine), model.fc.in_features)
    progress = new_progress()
    with progress:
        task = progress.add_task(description, total=len(mine), info="")
        for start in range(0, len(mine), batch_size):
            batch = torch.from_numpy(np.array(images[mine[start : start + batch_size]])).to(device)
            out[start : start + len(batch)] = backbone_features(model, to_model_input(batch)).float().cpu()
            progress.advance(task, len(batch))
    return torch.from_numpy(dist.gather(out.numpy()))


def make_optimizer(params, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel (one pass over all parameters instead of a loop of per-tensor ops: the
    step of a full ResNet50 took a fraction of foreach's time here, benchmarks/precision.py)."""
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def train_one_epoch(
    model,
    optimizer,
    scheduler,
    data: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    epoch: int,
    class_weights: torch.Tensor,
    device: torch.device,
    features: bool,
    after_step=None,
    net: nn.Module | None = None,
    dist: Distributed = SINGLE,
    attention: AttentionTargets | None = None,
) -> dict:
    """One pass over the training data; `features` means data holds pooled features and only the head trains.
    after_step(model) runs after every optimiser step (the weight average). net: what computes the logits (the
    model or its head, wrapped in DDP under torchrun). Every process walks the same global order in global batches
    of batch_size x world size and trains on its part of each, so N processes see what one process with the global
    batch sees; augmentation draws stay those of the global batch. attention: add its weight x the films'
    explanation share outside their lungs to the loss (masks moved with the augmentation)."""
    order, generator = epoch_order(len(labels), labels, config.seed, epoch, config.weighted_sampler)
    augment = Augmentation() if config.augment and not features else None
    net = net if net is not None else (model.fc if features else model)
    if not features:
        set_train_mode(model, config.mode)
    total_loss, correct, seen, outside_sum, outside_n = 0.0, 0, 0, 0.0, 0
    global_batch = config.batch_size * dist.world
    precision = resolve_precision(config.precision, device)
    progress = new_progress()
    with progress:
        task = progress.add_task(f"Epoch {epoch + 1}/{config.epochs}", total=len(order), info="")
        for start in range(0, len(order), global_batch):
            whole = order[start : start + global_batch]
            if features:
                idx = np.array_split(whole.numpy(), dist.world)[dist.rank]
                targets = torch.from_numpy(labels[idx]).to(device)
                with autocast(precision, device):
                    logits = net(data[torch.from_numpy(idx)].to(device)).flatten()
            else:
                whole = np.sort(whole.numpy())
                batch = torch.from_numpy(np.array(data[whole]))
                masks = None if attention is None else torch.from_numpy(np.ascontiguousarray(attention.masks[whole]))
                # augmentation is drawn for the global batch: the same on every process
                if augment is not None and masks is None:
                    batch = augment(batch, generator)
                elif augment is not None:
                    batch, masks = augment(batch, generator, masks)
                part = np.array_split(np.arange(len(whole)), dist.world)[dist.rank]
                targets = torch.from_numpy(labels[whole[part]]).to(device)
                inputs = to_model_input(batch[torch.from_numpy(part)].to(device))
                if attention is None:
                    with autocast(precision, device):
                        logits = net(inputs).flatten()
                else:
                    mine = masks[torch.from_numpy(part)].to(device)
                    with autocast(precision, device):
                        logits, share = attention.shares(net, model, inputs, targets, mine)
                    share = share.float()
                    present = torch.from_numpy(attention.present[whole[part]]).to(device)
                    penalty = (share * present).sum() / present.sum().clamp(min=1)
                    outside_sum += float((share.detach() * present).sum())
                    outside_n += int(present.sum())
            logits = logits.float()  # the loss, and everything after it, in fp32
            loss = weighted_loss(logits, targets, class_weights, len(targets) * dist.world / len(whole))
            loss_total = loss if attention is None else loss + attention.weight * penalty
            optimizer.zero_grad(set_to_none=True)
            loss_total.backward()
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step(model)
            total_loss += loss.item() * len(targets) * len(whole) / max(1, len(targets) * dist.world)
            correct += int(((logits.detach() > 0).long() == targets).sum())
            seen += len(targets)
            progress.update(task, advance=len(targets), info=f"loss {total_loss / seen:.4f} acc {correct / seen:.3f}")
    row = {"train_loss": total_loss / seen, "train_acc": correct / seen, "lr": optimizer.param_groups[0]["lr"]}
    if attention is not None:  # train_loss stays the classification loss; this is what the penalty pushed down
        row["train_outside_lungs_share"] = outside_sum / max(1, outside_n)
    return row


def validate(
    model,
    val: LoadedImages,
    val_features: torch.Tensor | None,
    config: TrainConfig,
    device: torch.device,
    class_weights: torch.Tensor,
    dist: Distributed = SINGLE,
) -> tuple[dict, np.ndarray]:
    """(val_loss, val_auc, val_acc at 0.5; the logits). val_loss is the objective training minimises (class-weighted
    BCE), so select_by loss selects on it. `val` holds the images at the size the model is evaluated at."""
    from sklearn.metrics import roc_auc_score

    model.eval()
    if val_features is not None:
        with torch.inference_mode():
            logits = model.fc(val_features.to(device)).flatten().double().cpu().numpy()
    else:
        mine = dist.part(len(val.images))
        images = val.images if not dist.active else np.asarray(val.images[mine])
        with autocast(resolve_precision(config.precision, device), device):
            logits = predict_logits(model, images, config.batch_size, device, description="Validating")
        logits = dist.gather(logits)
    labels = val.labels
    loss = float(weighted_loss(torch.from_numpy(logits), torch.from_numpy(labels), class_weights.double()))
    probs = probability(logits)
    return {
        "val_loss": loss,
        "val_auc": float(roc_auc_score(labels, probs)),
        "val_acc": float(np.mean((probs >= 0.5) == labels)),
    }, logits


def selection_score(val_metrics: dict, select_by: str) -> float:
    """The best epoch maximises this on validation. auc: ROC-AUC; loss: minus the training loss; auc_acc: ROC-AUC plus
    accuracy at 0.5, so an epoch that ranks well but decides badly (temperature scaling never moves the 0.5
    boundary of a one-logit model, so this is also its calibrated accuracy) is not chosen."""
    if select_by == "auc":
        return val_metrics["val_auc"]
    if select_by == "auc_acc":
        return val_metrics["val_auc"] + val_metrics["val_acc"]
    return -val_metrics["val_loss"]


def focused_data(prepared: PreparedData, config: TrainConfig) -> tuple[PreparedData, np.ndarray | None]:
    """The training and validation images as the model will see them (--focus), and the training films' crop boxes
    (None for focus none, where nothing changes)."""
    if config.focus == "none":
        return prepared, None
    from dataclasses import replace

    from pneumocam.focus import focus_images

    train, val = (focus_images(part, config.focus, config.focus_masks) for part in (prepared.train, prepared.val))
    return replace(prepared, train=train.inputs(prepared.train), val=val.inputs(prepared.val)), train.boxes


@dataclass
class AttentionTargets:
    """The attention penalty's lung masks for the training films (aligned with them, as the model sees them) and
    its weight; films without a mask are not penalised. The masks are labels, moved by the augmentation as one
    (nearest): LUNG inside the lungs, IGNORE where the reference mask says ignore (left out of the share)."""

    LUNG, IGNORE = 1, 2
    masks: np.ndarray  # uint8 (N, S, S): 0, LUNG or IGNORE
    present: np.ndarray  # bool (N,)
    weight: float
    on: str = "gradcam"  # gradcam: the layer4 Grad-CAM map; input: the squared input gradient (Ross et al. 2017)

    def shares(self, net, model, inputs, targets, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, each film's share outside its lungs) from one forward pass kept in the graph."""
        lungs, ignore = labels == self.LUNG, labels == self.IGNORE
        if self.on == "input":
            inputs = inputs.detach().requires_grad_(True)
            logits = net(inputs).flatten()
            return logits, input_gradient_outside_share(inputs, logits, targets, lungs, ignore)
        logits, activations = forward_keeping_layer4(net, model, inputs)
        return logits, outside_share(activations, logits, targets, lungs, ignore)


def attention_targets(prepared: PreparedData, config: TrainConfig, boxes: np.ndarray | None) -> AttentionTargets | None:
    """The lung masks of the (focused) training films, cut like them when boxes are given."""
    if not config.attention_penalty:
        return None
    from pneumocam.focus import crop_masks
    from pneumocam.regions import load_masks_and_ignore

    side = prepared.train.images.shape[-1]
    lungs, present, ignore = load_masks_and_ignore(config.attention_masks, prepared.train.samples, side)
    masks = np.where(lungs, AttentionTargets.LUNG, np.where(ignore, AttentionTargets.IGNORE, 0)).astype(np.uint8)
    if boxes is not None:
        masks = crop_masks(masks, boxes)
    if not present.any():
        raise DataError(
            f"no training film has a lung mask under {config.attention_masks}: the penalty would do nothing"
        )
    return AttentionTargets(masks, present, config.attention_penalty, config.attention_on)


def forward_keeping_layer4(net: nn.Module, model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, layer4's output, still in the graph) of one forward pass."""
    captured = {}
    hook = model.layer4.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    try:
        logits = net(inputs).flatten()
    finally:
        hook.remove()
    return logits, captured["a"]


def outside_share(activations: torch.Tensor, logits: torch.Tensor, targets, masks, ignore=None) -> torch.Tensor:
    """Differentiable Grad-CAM of each film's true class on layer4, and the share of its mass outside the lung mask
    (mask pooled to the map's grid: each cell counts by the lung fraction it holds); ignore pixels (pooled the same
    way) are left out of both the outside mass and the total."""
    sign = targets.float() * 2 - 1  # a one-logit model: the NORMAL map is the one of minus the logit
    (gradients,) = torch.autograd.grad((logits * sign).sum(), activations, create_graph=True)
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1))
    total, outside = _kept_and_outside(cam, masks, ignore, lambda m: F.adaptive_avg_pool2d(m, cam.shape[-2:]))
    # An empty map counts as all outside: otherwise erasing the map would be the cheapest way to zero the penalty.
    return torch.where(total > 1e-8, outside / total.clamp(min=1e-8), torch.ones_like(total))


def _kept_and_outside(mass: torch.Tensor, lungs, ignore, to_grid) -> tuple[torch.Tensor, torch.Tensor]:
    """(each film's mass outside its ignore pixels, the part of it outside the lungs): a grid cell holding lung
    fraction l and ignore fraction g keeps (1 - g) of its mass, of which (1 - l - g) lies outside the lungs."""
    inside = to_grid(lungs.float().unsqueeze(1)).squeeze(1)
    left_out = torch.zeros_like(inside) if ignore is None else to_grid(ignore.float().unsqueeze(1)).squeeze(1)
    total = (mass * (1 - left_out)).sum(dim=(1, 2))
    outside = (mass * (1 - inside - left_out).clamp(min=0)).sum(dim=(1, 2))
    return total, outside


def input_gradient_outside_share(
    inputs: torch.Tensor, logits: torch.Tensor, targets, masks, ignore=None
) -> torch.Tensor:
    """The share of each film's squared input gradient (of its true class's score, summed over channels) that lies
    outside its lungs (mask resized to the input by area): "right for the right reasons" on the pixels themselves,
    which a deep map cannot give (a layer4 cell sees the whole film)."""
    sign = targets.float() * 2 - 1
    (gradients,) = torch.autograd.grad((logits * sign).sum(), inputs, create_graph=True)
    energy = gradients.pow(2).sum(dim=1)
    total, outside = _kept_and_outside(
        energy, masks, ignore, lambda m: F.interpolate(m, size=energy.shape[-2:], mode="area")
    )
    return torch.where(total > 0, outside / total.clamp(min=1e-30), torch.ones_like(total))


def fit_model_guard(checkpoint: Path, prepared: PreparedData, config: TrainConfig, device, features=None) -> dict:
    """Fit the domain-shift guard on the selected model's features of the training and validation films and store
    it in model.pt. features: (train, val) pooled features already computed (frozen mode)."""
    from pneumocam.guard import fit_guard, save_guard
    from pneumocam.model import load_checkpoint

    if features is None:
        model, _ = load_checkpoint(checkpoint, device)
        with autocast(resolve_precision(config.precision, device), device):
            features = [
                extract_features(model, part.images, config.batch_size, device, f"Guard features ({name})")
                for name, part in (("train", prepared.train), ("val", prepared.val))
            ]
    guard = fit_guard(np.asarray(features[0]), prepared.train.labels, np.asarray(features[1]))
    save_guard(checkpoint, guard)
    return guard.fitted_on | {"threshold": guard.threshold}


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the weights and BatchNorm statistics; it starts at the first step's weights."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def estimate_at_start(model: nn.Module, config: TrainConfig, images, n_val: int, first: int, device) -> float:
    """Seconds for epochs first.. of the training, from one timed step on a copy of the model (the model, its
    optimiser and the random draws are untouched): training steps scale with the pixel count of each epoch's size,
    validation passes are counted as a third of a step per film."""
    import copy

    probe = copy.deepcopy(model)
    set_train_mode(probe, config.mode)
    size = config.sizes[first]
    batch = torch.from_numpy(np.array(images[: config.batch_size])).float().unsqueeze(1)
    batch = F.interpolate(batch, size=(size, size), mode="bilinear").squeeze(1).round().clamp(0, 255).to(torch.uint8)
    inputs = to_model_input(batch.to(device))
    precision = resolve_precision(config.precision, device)
    for _ in range(2):  # the first step pays for allocation: time the second
        began = time.perf_counter()
        with autocast(precision, device):
            out = probe(inputs)
        out.float().sum().backward()
    per_film = (time.perf_counter() - began) / len(inputs)
    films = len(images) + n_val / 3
    return sum(films * per_film * (s / size) ** 2 for s in config.sizes[first:])


def estimate_remaining(sizes: list[int], epoch: int, seconds: float) -> float:
    """Seconds for the epochs after `epoch`, scaling its time by the pixel count of each later epoch's size."""
    return sum(seconds * (s / sizes[epoch]) ** 2 for s in sizes[epoch + 1 :])


def random_feature_control(
    config: TrainConfig, weights_info, prepared: PreparedData, history: list, best: dict, device
):
    """What pretraining buys: the same head, data, seed, epochs and optimiser on a random-init ResNet50's features.

    With random weights the model already is that control, and a sentence says so instead of training it twice."""
    if weights_info.source == "none":  # a checkpoint that started random has trained features: not the control
        return (
            "This model started from random weights, so it is itself the random-feature control: what a dense head "
            "learns on an untrained ResNet50's features (the original write-up's 77% is this kind of number)."
        )
    control, _ = build_model("none", seed=config.seed)
    control = control.to(device)
    params = apply_mode(control, "frozen")
    train_features = extract_features(
        control, prepared.train.images, config.batch_size, device, "Control features (train)"
    )
    val_features = extract_features(control, prepared.val.images, config.batch_size, device, "Control features (val)")
    labels = prepared.train.labels
    class_weights = class_weight_vector(labels, config.class_weights)
    optimizer = make_optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * -(-len(labels) // config.batch_size)
    )
    rows = []
    for epoch in range(config.epochs):
        train_one_epoch(
            control, optimizer, scheduler, train_features, labels, config, epoch, class_weights, device, True
        )
        rows.append(validate(control, prepared.val, val_features, config, device, class_weights)[0])
    chosen = max(rows, key=lambda r: selection_score(r, config.select_by))
    model_row = history[best["epoch"] - 1]
    return {
        "weights": "random initialisation (same seed)",
        "val_auc": chosen["val_auc"],
        "val_acc": chosen["val_acc"],
        "model_val_auc": model_row["val_auc"],
        "model_val_acc": model_row["val_acc"],
        "epochs": config.epochs,
    }


def fit(
    config: TrainConfig | None,
    runs_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    stop_after_epoch: int | None = None,
    on_start=None,
    overrides: dict | None = None,
) -> Path:
    """Train into a fresh run folder under runs_dir (or continue run_dir with resume=True); return the folder.

    overrides (resume only): settings given again; any that differ from the saved run's are refused.
    The folder then holds config.json, skipped.csv, history.json, checkpoints/last.pt (resumable), model.pt (the
    best epoch on validation, with the metadata of train_state.checkpoint_metadata) and train_summary.json.

    stop_after_epoch simulates an interruption (tests): the run stops, resumable, after that many epochs.
    on_start(run_dir) is called once the run folder exists (the CLI names it if the run is interrupted).
    """
    saved = None
    if resume:
        run_dir, saved, config = resumable_config(run_dir, overrides)
        state = load_train_state(run_dir / "checkpoints" / "last.pt")
    else:
        state = None
    device = resolve_device(config.device)
    dist = init_distributed(device)  # torchrun: every process trains, rank 0 alone writes
    main = dist.main
    say = console.print if main else (lambda *a, **k: None)
    # Weights first: a missing or bad weights file stops the run before any folder is made or image read.
    model, weights_info = build_model(config.weights, seed=config.seed)
    if config.attention_penalty and dist.active:
        raise SettingError("attention_penalty", "needs double backward, which DistributedDataParallel does not support")
    prepared, boxes = focused_data(prepare_data(config), config)
    attention = attention_targets(prepared, config, boxes)
    if saved is not None and saved.get("data_fingerprint") != prepared.fingerprint:
        raise CheckpointError(
            f"the training data changed since {run_dir} started (fingerprint {prepared.fingerprint}, the run "
            f"recorded {saved.get('data_fingerprint')}): files were added, removed or modified. Resuming "
            "would mix two datasets in one model; start a new run instead"
        )
    seen = {"training": seen_record(prepared.train.samples), "selection": seen_record(prepared.val.samples)}
    seen = inherit_seen(seen, weights_info.seen, weights_info.path)  # a model.pt as weights: what it saw counts
    if not resume:
        run_dir = Path(run_dir) if run_dir else (new_run_folder(runs_dir, prefix="train") if main else None)
        run_dir = Path(dist.broadcast(str(run_dir)))
    if on_start is not None and main:
        on_start(run_dir)
    if weights_info.is_random:
        say(f"[bold red]WARNING: {'; '.join([weights_info.description, *weights_info.notes])}[/]")
    precision = resolve_precision(config.precision, device)
    say(f"precision: {precision.used} ({precision.reason}; weights, loss and BatchNorm statistics stay fp32)")
    params = apply_mode(model, config.mode)
    model = model.to(device).to(memory_format=torch.channels_last)
    if not resume and main:
        write_json(
            run_dir / "config.json",
            {
                "train": config.to_dict(),
                "weights": weights_info,
                "data_fingerprint": prepared.fingerprint,
                "validation": prepared.validation_plan,
                "versions": library_versions(),
                "environment": environment(),
                "world_size": dist.world,
                "distributed": dist.to_dict() | {"global_batch": config.batch_size * dist.world},
                "precision": precision.to_dict(),
            },
        )
        write_skipped(run_dir / "skipped.csv", prepared.skipped)
    use_features = config.mode == "frozen" and not config.augment
    timings = {"feature_pass_s": None, "epochs_s": 0.0}
    if use_features:
        began = time.perf_counter()
        train_data = extract_features(model, prepared.train.images, config.batch_size, device, "Features (train)", dist)
        val_features = extract_features(model, prepared.val.images, config.batch_size, device, "Features (val)", dist)
        timings["feature_pass_s"] = time.perf_counter() - began
    else:
        train_data, val_features = prepared.train.images, None
    labels = prepared.train.labels
    class_weights = class_weight_vector(labels, config.class_weights)
    optimizer = make_optimizer(params, config)
    steps = config.epochs * -(-len(labels) // (config.batch_size * dist.world))
    net = dist.wrap(model.fc if use_features else model)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    )
    history, best, start = [], {"epoch": None, "score": None}, 0
    averaged, averaged_size = None, None  # the weight average of the current size phase (config.ema > 0)
    if state is not None:
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, start = state["history"], state["best"], state["epoch"] + 1
        if state.get("ema") is not None:
            averaged, averaged_size = weight_average(model, config.ema), config.sizes[state["epoch"]]
            averaged.load_state_dict(state["ema"])
        say(f"resuming {run_dir} after epoch {start}")
    if main:
        (run_dir / "checkpoints").mkdir(exist_ok=True)
    scaled: dict[int, tuple] = {}

    def phase(size: int):
        """Train and validation images at this epoch's size, resized once per phase of the schedule."""
        if size not in scaled:
            scaled.clear()
            scaled[size] = (resized(prepared.train, size), resized(prepared.val, size))
        return scaled[size]

    if not use_features and start < config.epochs:
        estimate = estimate_at_start(model, config, prepared.train.images, len(prepared.val.images), start, device)
        say(
            f"estimated training time: ~{estimate / 60:.1f} min for {config.epochs - start} epochs (one timed batch; "
            "measured again after the first epoch)"
        )
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        size = config.sizes[epoch]
        train_at, val_at = phase(size)
        if config.ema and averaged_size != size:
            # BatchNorm statistics and weights at another input size would blur the average: restart it per size.
            averaged, averaged_size = weight_average(model, config.ema), size
        epoch_data = train_data if use_features else train_at.images
        row = {"epoch": epoch + 1, "image_size": config.sizes[epoch]} | train_one_epoch(
            model,
            optimizer,
            scheduler,
            epoch_data,
            labels,
            config,
            epoch,
            class_weights,
            device,
            use_features,
            after_step=averaged.update_parameters if averaged is not None else None,
            net=net,
            dist=dist,
            attention=attention,
        )
        candidates = {"trained": model} | ({"ema": averaged.module} if averaged is not None else {})
        validated = {
            name: validate(candidate, val_at, val_features, config, device, class_weights, dist)
            for name, candidate in candidates.items()
        }
        row |= validated["trained"][0] | {
            f"ema_{k}": v for k, v in (validated["ema"][0] if "ema" in validated else {}).items()
        }
        row["seconds"] = time.perf_counter() - began
        timings["epochs_s"] += row["seconds"]
        history.append(row)
        eligible = size == config.image_size  # model.pt must work at the size it will be explained at
        for name, (val_metrics, val_logits) in validated.items():
            score = selection_score(val_metrics, config.select_by)
            if not eligible or (best["score"] is not None and score <= best["score"]):
                continue
            best = {"epoch": epoch + 1, "score": score, "parameters": name}
            if not main:
                continue
            calibration = calibrate(val_logits, prepared.val.labels, config.calibration)
            if calibration.note:
                say(f"[yellow]warning: {calibration.note}[/]")
            threshold = youden_threshold(prepared.val.labels, probability(val_logits / calibration.temperature))
            if threshold.note:
                say(f"[yellow]{threshold.note}[/]")
            save_checkpoint(
                run_dir / "model.pt",
                candidates[name],
                checkpoint_metadata(
                    config,
                    weights_info,
                    prepared,
                    epoch,
                    val_metrics | {"parameters": name},
                    threshold,
                    seen,
                    calibration,
                ),
            )
        if main:
            save_train_state(
                run_dir / "checkpoints" / "last.pt", model, optimizer, scheduler, epoch, history, best, config, averaged
            )
            write_json(run_dir / "history.json", history)
        dist.barrier()  # last.pt is whole before any process could stop or resume
        if epoch == start and config.epochs > start + 1:
            say(
                f"estimated time for the remaining {config.epochs - epoch - 1} epochs: "
                f"{estimate_remaining(config.sizes, epoch, row['seconds']) / 60:.1f} min"
            )
        averaged_text = (
            f" | ema auc {row['ema_val_auc']:.3f} acc {row['ema_val_acc']:.3f}" if "ema_val_auc" in row else ""
        )
        say(
            f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
            f"val loss {row['val_loss']:.4f} auc {row['val_auc']:.3f} acc {row['val_acc']:.3f}{averaged_text} "
            f"({row['seconds']:.1f}s)"
        )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            return run_dir
    if not main:
        return run_dir  # rank 0 fits the guard and finishes the folder
    began = time.perf_counter()
    guard = fit_model_guard(
        run_dir / "model.pt", prepared, config, device, (train_data, val_features) if use_features else None
    )
    timings["guard_fit_s"] = time.perf_counter() - began
    write_json(
        run_dir / "train_summary.json",
        {
            "guard": guard,
            "best_epoch": best["epoch"],
            "best_parameters": best.get("parameters", "trained"),
            "select_by": config.select_by,
            "history": history,
            "weights": weights_info,
            "validation": prepared.validation_plan,
            "timings_this_session": timings,
            "precision": precision.to_dict(),
            "control": random_feature_control(config, weights_info, prepared, history, best, device)
            if use_features
            else None,
        },
    )
    mark_complete(run_dir)
    return run_dir
