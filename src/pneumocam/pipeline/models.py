"""Open the model a command names (`--model` / `--checkpoint`: a pneumocam model.pt or a foreign spec), with a foreign
model's `threshold=val` resolved on the dataset's val split by the rule pneumocam's training uses (Youden's J,
evaluation.metrics.youden_threshold) before anything is evaluated."""

from __future__ import annotations

import os

import numpy as np
import torch

from pneumocam.core.defaults import BATCH_SIZE
from pneumocam.core.errors import PneumocamError
from pneumocam.core.messages import note
from pneumocam.data import discover, load_images
from pneumocam.evaluation.metrics import youden_threshold
from pneumocam.model.foreign import VALIDATION_THRESHOLD, layer_features
from pneumocam.model.forward import predict_logits
from pneumocam.model.network import probability
from pneumocam.model.session import load_model
from pneumocam.train.guard_fit import fit_guard


def open_model(
    spec: str | os.PathLike,
    device: torch.device,
    data: str | os.PathLike | None = None,
    evaluated_split: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> tuple[torch.nn.Module, dict]:
    """(network, metadata) of `spec`; a foreign model asking for threshold=val gets it chosen on data's val split,
    refused when that is the split being evaluated or when there is no data."""
    model, meta = load_model(spec, device)
    foreign = meta.get("foreign") or {}
    if (foreign.get("options") or {}).get("threshold") != VALIDATION_THRESHOLD:
        return model, meta
    if data is None:
        raise PneumocamError(
            f"{spec}: threshold=val is chosen on a dataset's val split; this command has no --data "
            "(choose it with `pneumocam evaluate --model ... --split val`, then give threshold=NUMBER)"
        )
    if evaluated_split == "val":
        raise PneumocamError(f"{spec}: threshold=val would be chosen on the films it is evaluated on (--split val)")
    loaded = load_images(discover(data).split("val"), int(meta["image_size"]), description="Reading val (threshold)")
    probs = probability(predict_logits(model, loaded.images, batch_size, device, description="Choosing threshold"))
    choice = youden_threshold(loaded.labels, np.asarray(probs))
    count = np.bincount(loaded.labels, minlength=2)
    rule = f"{choice.rule} of {data} ({count[0]} NORMAL, {count[1]} PNEUMONIA films), chosen by pneumocam"
    note(f"threshold for the foreign model: {choice.value:.4f} ({rule})")
    thresholds = {"youden_val": choice.value, "youden_rule": rule, "youden_note": choice.note}
    return model, meta | {"thresholds": thresholds}


def foreign_guard(model, data: str | os.PathLike, batch_size: int, device, image_size: int):
    """A guard for a foreign model, fitted on the films the user names as in-distribution (a dataset or manifest,
    every split): the declared layer's pooled features, class means and a Ledoit-Wolf covariance on every other
    film (train.guard_fit.fit_guard), its threshold passing 95% of the rest. Its record says what it was fitted on."""
    loaded = load_images(discover(data).samples, image_size, description="Reading in-distribution films")
    if len(set(loaded.labels.tolist())) < 2 or len(loaded.samples) < 20:
        raise PneumocamError(f"--guard-films {data}: give 20 films or more of both classes to fit a guard on")
    features = layer_features(model, loaded.images, batch_size, device)
    fit, held = np.arange(len(features)) % 2 == 0, np.arange(len(features)) % 2 == 1
    guard = fit_guard(features[fit], loaded.labels[fit], features[held], depth=str(model.layer))
    guard.fitted_on |= {"films": str(data), "named_by": "the user (--guard-films), as in-distribution"}
    note(f"guard fitted on {len(features)} films named in-distribution ({data})")
    return guard
