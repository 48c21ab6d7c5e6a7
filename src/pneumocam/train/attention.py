"""The attention penalty ("right for the right reasons"): each training film's explanation share outside its lungs,
differentiable, added to the loss (Grad-CAM of layer4, or the squared input gradient)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pneumocam.anatomy.focus import crop_masks
from pneumocam.core.errors import DataError
from pneumocam.data import PreparedData
from pneumocam.data.masks import load_masks_and_ignore
from pneumocam.model.gradcam import captured, explained_score, grad_cam
from pneumocam.train.config import TrainConfig


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

    @staticmethod
    def penalty(share: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(the mean outside share over the films that have a mask, in the graph; the sum of their shares)."""
        return (share * present).sum() / present.sum().clamp(min=1), float((share.detach() * present).sum())

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
    with captured(model, "layer4") as found:
        logits = net(inputs).flatten()
    return logits, found["activations"]


def outside_share(activations: torch.Tensor, logits: torch.Tensor, targets, masks, ignore=None) -> torch.Tensor:
    """Differentiable Grad-CAM of each film's true class on layer4, and the share of its mass outside the lung mask
    (mask pooled to the map's grid: each cell counts by the lung fraction it holds); ignore pixels (pooled the same
    way) are left out of both the outside mass and the total."""
    (gradients,) = torch.autograd.grad(explained_score(logits, targets), activations, create_graph=True)
    cam = F.relu(grad_cam(activations, gradients))
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
    (gradients,) = torch.autograd.grad(explained_score(logits, targets), inputs, create_graph=True)
    energy = gradients.pow(2).sum(dim=1)
    total, outside = _kept_and_outside(
        energy, masks, ignore, lambda m: F.interpolate(m, size=energy.shape[-2:], mode="area")
    )
    return torch.where(total > 0, outside / total.clamp(min=1e-30), torch.ones_like(total))
