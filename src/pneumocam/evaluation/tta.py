"""Test-time augmentation: each film read in a few fixed views inside the training augmentation's range, the
calibrated probabilities averaged.

    p_TTA(x) = (1 / V) sum_v sigmoid(z(T_v x) / temperature)

with T_v the views of VIEWS: the film as it is, rotated by -5 and +5 degrees, and scaled by 0.95 and 1.05 about
its centre (torchvision's affine, as the training augmentation moves films: rotation up to 7 degrees, scale 0.93
to 1.07; no flips, as training has none). The views lie inside what the model was trained on, so each is a film it
has learnt to read; averaging them smooths the decision over small changes of positioning. The decision threshold
is the one chosen on validation without TTA (choosing one on the averaged probabilities would need the validation
films read the same way). The guard's verdict is the film's as it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from pneumocam.evaluation.metrics import operating_points

VIEWS = {  # name: (rotation in degrees, scale about the centre)
    "as_is": (0.0, 1.0),
    "rotate_-5": (-5.0, 1.0),
    "rotate_+5": (5.0, 1.0),
    "scale_0.95": (0.0, 0.95),
    "scale_1.05": (0.0, 1.05),
}
COMBINATION = "mean of the calibrated probabilities over the views"


def view_images(images: np.ndarray, view: str, batch: int = 256) -> np.ndarray:
    """(N, H, W) uint8 films in one of VIEWS, moved as the training augmentation moves them (torchvision's affine
    with its defaults: nearest neighbour, black fill), a chunk at a time so that memory stays bounded."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got '{view}'")
    angle, scale = VIEWS[view]
    if (angle, scale) == (0.0, 1.0):
        return images
    out = np.empty_like(images)
    for start in range(0, len(images), batch):
        chunk = torch.from_numpy(np.array(images[start : start + batch]))  # a copy: the cache is read-only
        out[start : start + batch] = F.affine(chunk, angle=angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0])
    return out


def combined(probs: dict[str, np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """(the mean over VIEWS of each film's probability, metrics.json's "tta": the views, how they combine and each
    view's ROC-AUC). probs: each view's probabilities, every view's in the same film order."""
    if set(probs) != set(VIEWS):
        raise ValueError(f"expected the views {', '.join(VIEWS)}, got {', '.join(probs)}")
    mean = np.mean([probs[v] for v in VIEWS], axis=0)
    record = {
        "views": {v: {"rotation_deg": a, "scale": s} for v, (a, s) in VIEWS.items()},
        "combination": COMBINATION,
        "roc_auc_per_view": {v: operating_points(labels, probs[v])["roc_auc"] for v in VIEWS},
        "threshold_chosen_without_tta": True,
    }
    return mean, record
