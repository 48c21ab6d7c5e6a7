"""The Grad-CAM kernel, below both of its users: the explanation (explain.cam) and the attention penalty that trains
against it (train.attention). One class sign, one explained score, one formula, one hook on the layer.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization"): for the score y of the explained class and the layer's activations A (N, C, h, w),
    alpha_c = mean over (i, j) of dy / dA_c[i, j],     map = ReLU(sum_c alpha_c A_c).
The network has one logit for PNEUMONIA: the score explained for PNEUMONIA is the logit, for NORMAL its negative
(pytorch-grad-cam's BinaryClassifierOutputTarget does the same).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def class_sign(targets, like: torch.Tensor) -> torch.Tensor:
    """+1 where the explained class is PNEUMONIA (1), -1 where it is NORMAL (0), on `like`'s device and dtype."""
    return torch.as_tensor(targets, device=like.device).to(like.dtype) * 2 - 1


def explained_score(logits: torch.Tensor, targets) -> torch.Tensor:
    """The sum over films of the score each film's map explains (its logit, or minus it for NORMAL): its gradient
    with respect to any layer gives every film's own gradient at once (the films do not interact)."""
    return (logits * class_sign(targets, logits)).sum()


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) activations and gradients -> (N, h, w) Grad-CAM before its ReLU: channels weighted by their
    spatially averaged gradients."""
    return (gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1)


@contextmanager
def captured(model: nn.Module, layer: str, as_leaf: bool = False):
    """Yields a dict whose "activations" is `layer`'s output of the forward passes run inside. as_leaf: the output
    is replaced by a detached leaf that requires grad, so a backward stops there (the explanation's short backward);
    otherwise it stays in the graph (the penalty's, which trains through it)."""
    found: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        if not as_leaf:
            found["activations"] = output
            return output
        found["activations"] = output.detach().requires_grad_(True)
        # a copy goes on, so a network that applies an in-place ReLU next (torchvision's DenseNet) leaves the leaf be
        return found["activations"].clone()

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        yield found
    finally:
        handle.remove()
