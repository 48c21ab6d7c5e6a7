"""The training recipe: train_one_epoch, validate, fit(config). Library pieces live in data/ and model.py.

Faithful defaults: batch 32, 10 epochs, 224 px, frozen ImageNet backbone with a dense head. In frozen
mode the pooled features are computed once (BatchNorm in eval, no augmentation), so ten head epochs
cost about one backbone pass. Every epoch writes a resumable state; the best epoch on the validation
split (AUC or loss) becomes model.pt. The same seed gives the same weights, resumed or not.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from pneumocam.core.distributed import init_distributed
from pneumocam.core.errors import CheckpointError, SettingError
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
    class_weight_vector,
    make_optimizer,
    selection_score,
    train_one_epoch,
    validate,
    weight_average,
)
from pneumocam.train.state import checkpoint_metadata, load_train_state, resumable_config, save_train_state

console = Console(highlight=False)


def estimate_at_start(model: nn.Module, config: TrainConfig, images, n_val: int, first: int, device) -> float:
    """Seconds for epochs first.. of the training, from one timed step on a copy of the model (the model, its
    optimiser and the random draws are untouched): training steps scale with the pixel count of each epoch's size,
    validation passes are counted as a third of a step per film."""

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
