"""One batched forward pass over a split: logits, pooled features, or both, in the images' own order."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pneumocam.core.defaults import BATCH_SIZE
from pneumocam.core.distributed import SINGLE, Distributed
from pneumocam.core.progress import track
from pneumocam.data import to_model_input
from pneumocam.model.network import pooled_features, pooled_width


@torch.inference_mode()
def forward_pass(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
    *,
    order: np.ndarray | None = None,
    description: str = "Predicting",
    logits: bool = True,
    features: bool = False,
    dist: Distributed = SINGLE,
    deepest: str = "layer4",
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(one logit per image, its pooled features (`pooled_features`: layer4's, then layer2's)): the one batched pass
    every command runs, BatchNorm in eval.

    Results come back in the images' own order whatever order they ran in (order: a permutation to run them in).
    Under torchrun (dist) each process computes its contiguous part and every process receives the whole. deepest:
    the last block the features need (`pooled_features`); logits need layer4."""
    if logits and deepest != "layer4":
        raise ValueError("logits need the whole network: deepest must be layer4")
    model.eval()
    device = torch.device(device)
    mine = dist.part(len(images)) if order is None else np.asarray(order)
    out_logits = np.empty(len(images), dtype=np.float64) if logits else None
    out_features = np.empty((len(images), pooled_width(model)), dtype=np.float32) if features else None
    for idx in track([mine[i : i + batch_size] for i in range(0, len(mine), batch_size)], description):
        idx = np.sort(idx)  # ascending indices read a memory-mapped cache sequentially
        x = to_model_input(torch.from_numpy(np.array(images[idx])).to(device), channels_last=True)
        if not features:
            out_logits[idx] = model(x).float().flatten().cpu().numpy()
            continue
        pooled = pooled_features(model, x, deepest)
        out_features[idx] = pooled.float().cpu().numpy()
        if logits:
            out_logits[idx] = model.fc(pooled[:, : model.fc.in_features]).float().flatten().cpu().numpy()
    if dist.active:
        out_logits = None if out_logits is None else dist.gather(out_logits[mine])
        out_features = None if out_features is None else dist.gather(out_features[mine])
    return out_logits, out_features


def extract_features(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    description: str,
    dist: Distributed = SINGLE,
    head_only: bool = True,
    deepest: str = "layer4",
) -> torch.Tensor:
    """Pooled features for every image: the head's input (layer4's) or, head_only=False, every depth's
    (`pooled_features`: the guard's input too; deepest: the last block run). The frozen mode's one backbone pass."""
    _, found = forward_pass(
        model,
        images,
        batch_size,
        device,
        description=description,
        logits=False,
        features=True,
        dist=dist,
        deepest=deepest,
    )
    return torch.from_numpy(np.ascontiguousarray(found[:, : model.fc.in_features]) if head_only else found)


def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
    order: np.ndarray | None = None,
    description: str = "Predicting",
    features: np.ndarray | None = None,
) -> np.ndarray:
    """One logit per image in the images' own order. features: an (N, pooled_width(model)) array to fill with the
    pooled features (the guard's input)."""
    found, pooled = forward_pass(
        model, images, batch_size, device, order=order, description=description, features=features is not None
    )
    if features is not None:
        features[:] = pooled
    return found
