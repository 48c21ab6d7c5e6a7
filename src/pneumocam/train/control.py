"""The random-feature control: what pretraining buys, the same head trained on a random-init ResNet50's features."""

from __future__ import annotations

import torch

from pneumocam.data import PreparedData
from pneumocam.model.forward import extract_features
from pneumocam.model.network import apply_mode, build_model
from pneumocam.train.config import TrainConfig
from pneumocam.train.loop import (
    EpochData,
    Optimisation,
    class_weight_vector,
    make_optimizer,
    selection_score,
    train_one_epoch,
    validate,
)


def random_feature_control(
    config: TrainConfig, weights_info, prepared: PreparedData, history: list, best: dict, device, precision=None
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
        step = Optimisation(control, optimizer, scheduler)
        data = EpochData(train_features, labels, class_weights, features=True)
        train_one_epoch(step, data, config, epoch, device, precision=precision)
        rows.append(
            validate(control, prepared.val, val_features, config, device, class_weights, precision=precision)[0]
        )
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
