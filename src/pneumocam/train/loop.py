"""One epoch of training and one validation pass: class weights, the loss, the sample order, the optimiser, the
selection score, the weight average."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from queue import Queue
from threading import Thread
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pneumocam.core.distributed import SINGLE, Distributed
from pneumocam.core.precision import Precision, autocast
from pneumocam.core.progress import new_progress
from pneumocam.core.schema import FIXED_THRESHOLD, decide
from pneumocam.data import Augmentation, LoadedImages, to_model_input
from pneumocam.model.forward import predict_logits
from pneumocam.model.network import probability, set_train_mode
from pneumocam.train.attention import AttentionTargets
from pneumocam.train.config import TrainConfig


def class_weight_vector(labels: np.ndarray, policy: str) -> torch.Tensor:
    """Per-class loss weights; 'balanced' is scikit-learn's n / (2 * n_c)."""
    if policy == "none":
        return torch.ones(2)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return torch.tensor(len(labels) / (2.0 * counts), dtype=torch.float32)


def weighted_loss(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor, share: float = 1.0, smoothing: float = 0.0
) -> torch.Tensor:
    """Class-weighted BCE, the mean over the batch. share: this process's rows are part of a global batch of
    len(logits) / share rows (DDP); the sum is scaled so that DDP's gradient average is the global batch mean.
    smoothing (label smoothing, Szegedy et al. 2016, for two classes): the target y becomes y (1 - e) + e / 2."""
    weights = class_weights.to(logits.device)[targets.long()]
    soft = targets.to(logits.dtype) * (1.0 - smoothing) + smoothing / 2.0
    if share == 1.0:
        return F.binary_cross_entropy_with_logits(logits, soft, weight=weights)
    total = F.binary_cross_entropy_with_logits(logits, soft, weight=weights, reduction="sum")
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


def make_optimizer(params, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel (one pass over all parameters instead of a loop of per-tensor ops: the
    step of a full ResNet50 took a fraction of foreach's time here, benchmarks/precision.py)."""
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)


@dataclass
class Optimisation:
    """What each optimiser step changes: the model; net, what computes the logits (the model or its head, wrapped in
    DDP under torchrun; None: the model, or its head when training on features); the optimiser and its schedule;
    after_step(model), run after every step (the weight average)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    net: nn.Module | None = None
    after_step: Callable | None = None


@dataclass
class EpochData:
    """What an epoch trains on: the films (or, with features=True, their pooled features, and only the head
    trains), their labels and the class weights of the loss; attention: add its weight x the films' explanation
    share outside their lungs to the loss (masks moved with the augmentation; None: no penalty)."""

    data: torch.Tensor | np.ndarray
    labels: np.ndarray
    class_weights: torch.Tensor
    features: bool = False
    attention: AttentionTargets | None = None


def train_one_epoch(
    step: Optimisation,
    train: EpochData,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    dist: Distributed = SINGLE,
    precision: Precision | None = None,
) -> dict:
    """One pass over the training data. Every process walks the same global order in global batches of
    batch_size x world size and trains on its part of each, so N processes see what one process with the global
    batch sees; augmentation draws stay those of the global batch. precision: the training's, resolved by fit (None:
    fp32)."""
    model, optimizer, scheduler, after_step = step.model, step.optimizer, step.scheduler, step.after_step
    data, labels, class_weights, features, attention = (
        train.data,
        train.labels,
        train.class_weights,
        train.features,
        train.attention,
    )
    order, generator = epoch_order(len(labels), labels, config.seed, epoch, config.weighted_sampler)
    augment = Augmentation(acquisition=config.acquisition_augment) if config.augment and not features else None
    net = step.net if step.net is not None else (model.fc if features else model)
    if not features:
        set_train_mode(model, config.mode)
    total_loss, correct, seen, outside_sum, outside_n = 0.0, 0, 0, 0.0, 0
    global_batch = config.batch_size * dist.world
    starts = range(0, len(order), global_batch)
    # The films' batches (read, augmented) are made one ahead in a thread while the network trains on the current
    # one; one thread draws them in order, so the augmentation's random stream is the one a single loop draws.
    films = None if features else _film_batches(order, starts, global_batch, data, attention, augment, generator)
    prepared = None if films is None else prefetched(films, PREFETCH)
    progress = new_progress()
    with progress:
        task = progress.add_task(f"Epoch {epoch + 1}/{config.epochs}", total=len(order), info="")
        for start in starts:
            whole = order[start : start + global_batch]
            if features:
                idx = np.array_split(whole.numpy(), dist.world)[dist.rank]
                targets = torch.from_numpy(labels[idx]).to(device)
                with autocast(precision, device):
                    logits = net(data[torch.from_numpy(idx)].to(device)).flatten()
            else:
                whole, batch, masks = next(prepared)
                part = np.array_split(np.arange(len(whole)), dist.world)[dist.rank]
                targets = torch.from_numpy(labels[whole[part]]).to(device)
                inputs = to_model_input(batch[torch.from_numpy(part)].to(device))
                if attention is None:
                    with autocast(precision, device):
                        logits = net(inputs).flatten()
                else:
                    mine = masks[torch.from_numpy(part)].to(device)
                    present = torch.from_numpy(attention.present[whole[part]]).to(device)
                    with autocast(precision, device):
                        logits, share = attention.shares(net, model, inputs, targets, mine)
                    penalty, share_sum = attention.penalty(share.float(), present)
                    outside_sum, outside_n = outside_sum + share_sum, outside_n + int(present.sum())
            logits = logits.float()  # the loss, and everything after it, in fp32
            loss = weighted_loss(
                logits, targets, class_weights, len(targets) * dist.world / len(whole), config.label_smoothing
            )
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


def _film_batches(order, starts, global_batch: int, data, attention, augment, generator):
    """Each global batch of films in the epoch's order: (indices, films, attention masks or None), augmented (the
    augmentation is drawn for the global batch: the same on every process)."""
    for start in starts:
        whole = np.sort(order[start : start + global_batch].numpy())
        batch = torch.from_numpy(np.array(data[whole]))
        masks = None if attention is None else torch.from_numpy(np.ascontiguousarray(attention.masks[whole]))
        if augment is not None and masks is None:
            batch = augment(batch, generator)
        elif augment is not None:
            batch, masks = augment(batch, generator, masks)
        yield whole, batch, masks


PREFETCH = 2  # batches made ahead of the one training


def prefetched(items: Iterator, depth: int = PREFETCH) -> Iterator:
    """`items` produced by a background thread, at most `depth` ahead of the consumer, in their order; an error in
    the producer is raised in the consumer. torch and numpy release the GIL while they copy and compute, so making
    the next batch overlaps the training step. depth 0: made in the consumer's thread, when asked (as before)."""
    if depth <= 0:
        yield from items
        return
    queue: Queue = Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for item in items:
                queue.put((True, item))
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put((False, exc))
        queue.put((True, done))

    Thread(target=produce, daemon=True, name="pneumocam-batches").start()
    while True:
        ok, item = queue.get()
        if not ok:
            raise item
        if item is done:
            return
        yield item


def validate(
    model,
    val: LoadedImages,
    val_features: torch.Tensor | None,
    config: TrainConfig,
    device: torch.device,
    class_weights: torch.Tensor,
    dist: Distributed = SINGLE,
    precision: Precision | None = None,
) -> tuple[dict, np.ndarray]:
    """(val_loss, val_auc, val_acc at 0.5; the logits). val_loss is the objective training minimises (class-weighted
    BCE), so select_by loss selects on it. `val` holds the images at the size the model is evaluated at."""

    model.eval()
    if val_features is not None:
        with torch.inference_mode():
            logits = model.fc(val_features.to(device)).flatten().double().cpu().numpy()
    else:
        mine = dist.part(len(val.images))
        images = val.images if not dist.active else np.asarray(val.images[mine])
        with autocast(precision, device):
            logits = predict_logits(model, images, config.batch_size, device, description="Validating")
        logits = dist.gather(logits)
    labels = val.labels
    loss = float(weighted_loss(torch.from_numpy(logits), torch.from_numpy(labels), class_weights.double()))
    probs = probability(logits)
    return {
        "val_loss": loss,
        "val_auc": float(roc_auc_score(labels, probs)),
        "val_acc": float(np.mean(decide(probs, FIXED_THRESHOLD) == labels)),
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


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the weights and BatchNorm statistics; it starts at the first step's weights."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
