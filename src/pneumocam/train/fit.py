"""fit(config): a training run as named steps (open the run, set up the optimisation, train each epoch, keep the best,
finish with the guard and the control). The epoch loop is train/loop.py.

Faithful defaults: batch 32, 10 epochs, 224 px, frozen backbone with a dense head (ImageNet weights with
--weights imagenet, the default; --weights none is a random start, said in every output). In frozen
mode the pooled features are computed once (BatchNorm in eval, no augmentation), so ten head epochs
cost about one backbone pass. Every epoch writes a resumable state; the best epoch on the validation
split (TrainConfig.select_by) becomes model.pt. The same seed gives the same weights, resumed or not.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.markup import escape
from torch import nn

from pneumocam.core.distributed import init_distributed
from pneumocam.core.errors import CheckpointError, SettingError
from pneumocam.core.messages import note, silent
from pneumocam.core.outputs import mark_complete, new_run_folder, write_json, write_skipped
from pneumocam.core.precision import autocast, resolve_precision
from pneumocam.core.provenance import environment, library_versions
from pneumocam.data import prepare_data, resized, to_model_input
from pneumocam.evaluation.calibration import calibrate
from pneumocam.evaluation.leakage import inherit_seen, seen_record
from pneumocam.evaluation.metrics import youden_threshold
from pneumocam.model.forward import extract_features
from pneumocam.model.inputs import ModelInputs
from pneumocam.model.network import (
    apply_mode,
    build_model,
    probability,
    resolve_device,
    save_checkpoint,
    set_train_mode,
)
from pneumocam.train.attention import attention_targets
from pneumocam.train.config import TrainConfig
from pneumocam.train.control import random_feature_control
from pneumocam.train.guard_fit import fit_model_guard
from pneumocam.train.loop import (
    EpochData,
    Optimisation,
    class_weight_vector,
    make_optimizer,
    selection_score,
    train_one_epoch,
    validate,
    weight_average,
)
from pneumocam.train.state import checkpoint_metadata, load_train_state, resumable_config, save_train_state


def estimate_at_start(
    model: nn.Module, config: TrainConfig, images, n_val: int, first: int, device, precision=None
) -> float:
    """Seconds for epochs first.. of the training, from one timed step on a copy of the model (the model, its
    optimiser and the random draws are untouched): training steps scale with the pixel count of each epoch's size,
    validation passes are counted as a third of a step per film."""

    probe = copy.deepcopy(model)
    set_train_mode(probe, config.mode)
    size = config.sizes[first]
    batch = torch.from_numpy(np.array(images[: config.batch_size])).float().unsqueeze(1)
    batch = F.interpolate(batch, size=(size, size), mode="bilinear").squeeze(1).round().clamp(0, 255).to(torch.uint8)
    inputs = to_model_input(batch.to(device))
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


@dataclass
class Training:
    """What a training run holds between its steps."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    dist: Any
    say: Callable
    model: nn.Module
    weights_info: Any
    prepared: Any
    attention: Any
    seen: dict
    precision: Any
    params: list
    use_features: bool = False
    train_data: Any = None
    val_features: Any = None
    guard_inputs: Any = None  # frozen mode: (train, val) pooled features of every depth
    class_weights: Any = None
    optimizer: Any = None
    scheduler: Any = None
    net: Any = None
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "score": None})
    start: int = 0
    averaged: Any = None  # the weight average of the current size phase (config.ema > 0)
    averaged_size: int | None = None
    timings: dict = field(default_factory=lambda: {"feature_pass_s": None, "epochs_s": 0.0})
    scaled: dict = field(default_factory=dict)

    def phase(self, size: int):
        """Train and validation images at this epoch's size, resized once per phase of the schedule."""
        if size not in self.scaled:
            self.scaled.clear()
            self.scaled[size] = (resized(self.prepared.train, size), resized(self.prepared.val, size))
        return self.scaled[size]


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
    saved = state = None
    if resume:
        run_dir, saved, config = resumable_config(run_dir, overrides)
        state = load_train_state(run_dir / "checkpoints" / "last.pt")
    run = open_training(config, runs_dir, run_dir, resume, saved, on_start)
    set_up_optimisation(run, state)
    if not run.use_features and run.start < config.epochs:
        estimate = estimate_at_start(
            run.model,
            config,
            run.prepared.train.images,
            len(run.prepared.val.images),
            run.start,
            run.device,
            run.precision,
        )
        run.say(
            f"estimated training time: ~{estimate / 60:.1f} min for {config.epochs - run.start} epochs (one timed "
            "batch; measured again after the first epoch)"
        )
    for epoch in range(run.start, config.epochs):
        train_epoch(run, epoch)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            return run.run_dir
    if run.dist.main:  # rank 0 fits the guard and finishes the folder
        finish_training(run)
    return run.run_dir


def open_training(config: TrainConfig, runs_dir, run_dir, resume: bool, saved: dict | None, on_start) -> Training:
    """Weights, data and the run folder with its config.json: everything before the first step."""
    device = resolve_device(config.device)
    dist = init_distributed(device)  # torchrun: every process trains, rank 0 alone writes
    say = note if dist.main else silent  # rank 0 speaks for every process
    # Weights first: a missing or bad weights file stops the run before any folder is made or image read.
    model, weights_info = build_model(config.weights, seed=config.seed)
    if config.attention_penalty and dist.active:
        raise SettingError("attention_penalty", "needs double backward, which DistributedDataParallel does not support")
    prepared, boxes = ModelInputs.of_training(config).prepared(prepare_data(config))
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
        run_dir = Path(run_dir) if run_dir else (new_run_folder(runs_dir, prefix="train") if dist.main else None)
        run_dir = Path(dist.broadcast(str(run_dir)))
    if on_start is not None and dist.main:
        on_start(run_dir)
    if weights_info.is_random:
        say(f"[bold red]WARNING: {escape('; '.join([weights_info.description, *weights_info.notes]))}[/]")
    precision = resolve_precision(config.precision, device)
    say(f"precision: {precision.used} ({precision.reason}; weights, loss and BatchNorm statistics stay fp32)")
    params = apply_mode(model, config.mode)
    model = model.to(device).to(memory_format=torch.channels_last)
    run = Training(
        config, run_dir, device, dist, say, model, weights_info, prepared, attention, seen, precision, params
    )
    if not resume and dist.main:
        write_run_config(run)
    return run


def write_run_config(run: Training) -> None:
    config, dist = run.config, run.dist
    write_json(
        run.run_dir / "config.json",
        {
            "train": config.to_dict(),
            "weights": run.weights_info,
            "data_fingerprint": run.prepared.fingerprint,
            "validation": run.prepared.validation_plan,
            "versions": library_versions(),
            "environment": environment(),
            "world_size": dist.world,
            "distributed": dist.to_dict() | {"global_batch": config.batch_size * dist.world},
            "precision": run.precision.to_dict(),
        },
    )
    write_skipped(run.run_dir / "skipped.csv", run.prepared.skipped)


def set_up_optimisation(run: Training, state: dict | None) -> None:
    """Frozen mode's one feature pass, the loss weights, optimiser and schedule, and a resumed run's state."""
    config, prepared, dist = run.config, run.prepared, run.dist
    run.use_features = config.mode == "frozen" and not config.augment
    if run.use_features:
        began = time.perf_counter()
        run.guard_inputs = tuple(  # every depth's pooled features: the guard reads layer2's, the head layer4's
            extract_features(run.model, part.images, config.batch_size, run.device, f"Features ({name})", dist, False)
            for name, part in (("train", prepared.train), ("val", prepared.val))
        )
        run.train_data, run.val_features = (f[:, : run.model.fc.in_features].contiguous() for f in run.guard_inputs)
        run.timings["feature_pass_s"] = time.perf_counter() - began
    else:
        run.train_data = prepared.train.images
    run.class_weights = class_weight_vector(prepared.train.labels, config.class_weights)
    run.optimizer = make_optimizer(run.params, config)
    steps = config.epochs * -(-len(prepared.train.labels) // (config.batch_size * dist.world))
    run.net = dist.wrap(run.model.fc if run.use_features else run.model)
    run.scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer, T_max=steps)
        if config.schedule == "cosine"
        else torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda _: 1.0)
    )
    if state is not None:
        run.model.load_state_dict(state["model"], strict=False)
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.history, run.best, run.start = state["history"], state["best"], state["epoch"] + 1
        if state.get("ema") is not None:
            run.averaged, run.averaged_size = weight_average(run.model, config.ema), config.sizes[state["epoch"]]
            run.averaged.load_state_dict(state["ema"])
        run.say(f"resuming {run.run_dir} after epoch {run.start}")
    if dist.main:
        (run.run_dir / "checkpoints").mkdir(exist_ok=True)


def train_epoch(run: Training, epoch: int) -> None:
    """One epoch: train, validate the trained weights (and their average), keep the best, write the resumable state."""
    config = run.config
    began, cpu_began = time.perf_counter(), time.process_time()
    size = config.sizes[epoch]
    train_at, val_at = run.phase(size)
    if config.ema and run.averaged_size != size:
        # BatchNorm statistics and weights at another input size would blur the average: restart it per size.
        run.averaged, run.averaged_size = weight_average(run.model, config.ema), size
    epoch_data = run.train_data if run.use_features else train_at.images
    step = Optimisation(
        run.model,
        run.optimizer,
        run.scheduler,
        net=run.net,
        after_step=run.averaged.update_parameters if run.averaged is not None else None,
    )
    train = EpochData(epoch_data, run.prepared.train.labels, run.class_weights, run.use_features, run.attention)
    row = {"epoch": epoch + 1, "image_size": size} | train_one_epoch(
        step, train, config, epoch, run.device, run.dist, run.precision
    )
    row["train_seconds"] = time.perf_counter() - began  # the rest of the epoch's seconds is validating
    candidates = {"trained": run.model} | ({"ema": run.averaged.module} if run.averaged is not None else {})
    validated = {
        name: validate(
            candidate, val_at, run.val_features, config, run.device, run.class_weights, run.dist, run.precision
        )
        for name, candidate in candidates.items()
    }
    row |= validated["trained"][0] | {
        f"ema_{k}": v for k, v in (validated["ema"][0] if "ema" in validated else {}).items()
    }
    row["seconds"] = time.perf_counter() - began
    # this process's CPU time over the wall time and the cores it may use: 1.0 keeps every core busy
    row["cpu_utilisation"] = (time.process_time() - cpu_began) / row["seconds"] / max(1, len(os.sched_getaffinity(0)))
    run.timings["epochs_s"] += row["seconds"]
    run.history.append(row)
    if size == config.image_size:  # model.pt must work at the size it will be explained at
        keep_best(run, epoch, candidates, validated)
    if run.dist.main:
        save_train_state(
            run.run_dir / "checkpoints" / "last.pt",
            run.model,
            run.optimizer,
            run.scheduler,
            epoch,
            run.history,
            run.best,
            config,
            run.averaged,
        )
        write_json(run.run_dir / "history.json", run.history)
    run.dist.barrier()  # last.pt is whole before any process could stop or resume
    report_epoch(run, epoch, row)


def keep_best(run: Training, epoch: int, candidates: dict, validated: dict) -> None:
    """Save model.pt (calibration and threshold chosen on validation) when a candidate beats the best so far."""
    config, val_labels = run.config, run.prepared.val.labels
    for name, (val_metrics, val_logits) in validated.items():
        score = selection_score(val_metrics, config.select_by)
        if run.best["score"] is not None and score <= run.best["score"]:
            continue
        run.best = {"epoch": epoch + 1, "score": score, "parameters": name}
        if not run.dist.main:
            continue
        calibration = calibrate(val_logits, val_labels, config.calibration)
        if calibration.note:
            run.say(f"[yellow]warning: {calibration.note}[/]")
        threshold = youden_threshold(val_labels, probability(val_logits / calibration.temperature))
        if threshold.note:
            run.say(f"[yellow]{threshold.note}[/]")
        metadata = checkpoint_metadata(
            config,
            run.weights_info,
            run.prepared,
            epoch,
            val_metrics | {"parameters": name},
            threshold,
            run.seen,
            calibration,
            run.precision,
        )
        save_checkpoint(run.run_dir / "model.pt", candidates[name], metadata)


def report_epoch(run: Training, epoch: int, row: dict) -> None:
    config = run.config
    if epoch == run.start and config.epochs > run.start + 1:
        run.say(
            f"estimated time for the remaining {config.epochs - epoch - 1} epochs: "
            f"{estimate_remaining(config.sizes, epoch, row['seconds']) / 60:.1f} min"
        )
    averaged_text = f" | ema auc {row['ema_val_auc']:.3f} acc {row['ema_val_acc']:.3f}" if "ema_val_auc" in row else ""
    run.say(
        f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
        f"val loss {row['val_loss']:.4f} auc {row['val_auc']:.3f} acc {row['val_acc']:.3f}{averaged_text} "
        f"({row['seconds']:.1f}s)"
    )


def finish_training(run: Training) -> None:
    """The guard, the random-feature control (frozen mode), train_summary.json, and the folder marked complete."""
    config, prepared = run.config, run.prepared
    began = time.perf_counter()
    features = run.guard_inputs if run.use_features else None
    model = run.model if run.use_features else None  # the frozen backbone is the checkpoint's; else load the best
    guard = fit_model_guard(run.run_dir / "model.pt", prepared, config, run.device, features, model, run.precision)
    run.timings["guard_fit_s"] = time.perf_counter() - began
    control = (
        random_feature_control(config, run.weights_info, prepared, run.history, run.best, run.device, run.precision)
        if run.use_features
        else None
    )
    write_json(
        run.run_dir / "train_summary.json",
        {
            "guard": guard,
            "best_epoch": run.best["epoch"],
            "best_parameters": run.best.get("parameters", "trained"),
            "select_by": config.select_by,
            "history": run.history,
            "weights": run.weights_info,
            "validation": prepared.validation_plan,
            "timings_this_session": run.timings,
            "precision": run.precision.to_dict(),
            "control": control,
        },
    )
    mark_complete(run.run_dir)
