"""Occlusion sensitivity maps: evidence measured by hiding parts of the film, with no gradient and no layer4.

Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks". A square window of side `window`
(a seventh of the film's side by default, a layer4 cell's span) slides over the input in steps of `stride` (half
the window) and replaces what it covers with neutral grey (the value --focus puts outside the body); with f_c
the model's evidence for class c (the logit for PNEUMONIA, minus it for NORMAL),
    A(p) = mean over the windows W covering pixel p of  f_c(x) - f_c(x with W grey),
computed by Captum's `Occlusion` (windows start every stride pixels until one reaches the edge, where the last is
cut, so every pixel is covered; the window spans the three identical channels, so A is one channel's). The map
keeps the positive part, max(A, 0): the pixels whose hiding lowers the evidence for the film's class.

A model trained to move its Grad-CAM map (--attention-penalty) was not trained on this one, so its region shares
are independent evidence of where the decision's evidence lies. Each film costs about
((side - window) / stride + 1)^2 forward passes (169 at 224 px with the defaults), so runs measure a sample.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from pneumocam.anatomy.focus import NEUTRAL_GREY
from pneumocam.core.progress import track
from pneumocam.data import to_model_input

WINDOW_SHARE = 1 / 7  # of the side: 32 px at 224 px, in steps of 16 px (13 x 13 positions)


def default_window(side: int) -> tuple[int, int]:
    """(window, stride) for films of this side."""
    window = max(2, round(side * WINDOW_SHARE))
    return window, max(1, window // 2)


def _class_evidence(model: nn.Module):
    def forward(x: torch.Tensor) -> torch.Tensor:
        logit = model(x).float().reshape(-1, 1)
        return torch.cat([-logit, logit], dim=1)  # column c: the evidence for class c

    return forward


def occlusion_maps(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    device: torch.device | str = "cpu",
    window: int | None = None,
    stride: int | None = None,
    grid: int | None = None,
    per_pass: int = 64,
) -> np.ndarray:
    """(N, grid, grid) float32 occlusion maps of uint8 films (N, H, W) for their own class (labels), on a grid of
    side grid (H / 4 by default, like the films' Grad-CAM grid), the positive part only."""
    from captum.attr import Occlusion  # deferred: captum.attr adds 0.6 s to start-up, used only here

    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(labels):
        raise ValueError(
            f"expected (N, H, W) uint8 films and N labels, got {images.shape} {images.dtype}, {len(labels)}"
        )
    side = images.shape[-1]
    window, stride = window or default_window(side)[0], stride or default_window(side)[1]
    if not 0 < stride <= window <= side:
        raise ValueError(f"need 0 < stride <= window <= side, got stride {stride}, window {window}, side {side}")
    grid = grid or max(8, side // 4)
    model.eval()
    occlusion = Occlusion(_class_evidence(model))
    device = torch.device(device)
    out = np.empty((len(images), grid, grid), dtype=np.float32)
    grey = to_model_input(torch.full((1, side, side), NEUTRAL_GREY, dtype=torch.uint8, device=device), False)
    for i in track(range(len(images)), "Occlusion maps", total=len(images)):
        x = to_model_input(torch.from_numpy(images[i : i + 1].copy()).to(device), channels_last=False)
        with torch.no_grad():
            attribution = occlusion.attribute(
                x,
                sliding_window_shapes=(3, window, window),
                strides=(3, stride, stride),
                baselines=grey,
                target=int(labels[i]),
                perturbations_per_eval=per_pass,
                show_progress=False,
            )
        drop = attribution[0, 0].float().clamp(min=0).cpu().numpy()  # every channel holds the same drop
        out[i] = cv2.resize(drop, (grid, grid), interpolation=cv2.INTER_AREA)
    return out
