"""Lung-field estimates for images without masks, always labelled "estimated" where used.

Two estimators:
- `classical_lungs`: body silhouette, CLAHE, dark pixels inside the body under a loose two-ellipse
  anatomical prior, the largest component on each side of the midline, each closed to its convex hull
  (reference masks include the lung behind the heart, which thresholding alone misses).
- `LungModel`: a small convolutional net over per-pixel features (intensity at four scales,
  position in the image and in the body, the classical estimate) at 1/4 resolution, trained by the
  user's own command on their masks (`pneumocam lungs fit`). Saved as a plain state_dict, loaded with
  weights_only=True.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pneumocam.core.defaults import SEED
from pneumocam.core.errors import CheckpointError
from pneumocam.core.outputs import atomic_write_bytes
from pneumocam.core.progress import track

FEATURE_SIDE = 56
MODEL_FORMAT = "pneumocam-lung-model"


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every region not reachable from the image border through background."""
    padded = np.pad(~mask.astype(bool), 1, constant_values=True).astype(np.uint8)
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2


def body_mask(gray: np.ndarray) -> np.ndarray:
    """The exposed body: the largest bright component (Otsu on a blurred film), closed and hole-filled.

    Burnt-in letters and markers are separate small components on the blank border, so they drop out.
    """
    blur = cv2.GaussianBlur(gray, (0, 0), 2)
    otsu, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    candidate = (blur > 0.5 * otsu).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if n <= 1:
        return np.ones(gray.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    closed = cv2.morphologyEx((labels == largest).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    return fill_holes(closed.astype(bool))


def _two_largest_per_side(mask: np.ndarray, min_area_share: float = 0.01, hull: bool = True) -> np.ndarray:
    side = mask.shape[1]
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = np.zeros(mask.shape, np.uint8)
    order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    for left in (True, False):
        for i in order:
            if (centroids[i][0] < side / 2) == left and stats[i, cv2.CC_STAT_AREA] > min_area_share * mask.size:
                component = (labels == i).astype(np.uint8)
                if hull:
                    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                    cv2.fillPoly(out, [cv2.convexHull(np.vstack(contours))], 1)
                else:
                    out |= fill_holes(component.astype(bool)).astype(np.uint8)
                break
    return out.astype(bool)


def classical_lungs(gray: np.ndarray, dark_quantile: float = 0.6, body: np.ndarray | None = None) -> np.ndarray:
    """body: the film's body mask when the caller already has it."""
    side = gray.shape[0]
    enhanced = cv2.GaussianBlur(cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray), (0, 0), 3)
    yy, xx = np.mgrid[0:side, 0:side] / side
    prior = np.zeros(gray.shape, dtype=bool)
    for cx in (0.30, 0.70):
        prior |= ((xx - cx) / 0.2) ** 2 + ((yy - 0.47) / 0.36) ** 2 < 1
    region = (body_mask(gray) if body is None else body) & prior
    if not region.any():
        return np.zeros(gray.shape, dtype=bool)
    dark = (enhanced < np.quantile(enhanced[region], dark_quantile)) & region
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return _two_largest_per_side(dark.astype(bool))


def lung_features(gray: np.ndarray) -> np.ndarray:
    """(C, 56, 56) float32 per-pixel features for the learned estimator."""
    side = gray.shape[0]

    def shrink(a):
        return cv2.resize(a.astype(np.float32), (FEATURE_SIDE, FEATURE_SIDE), interpolation=cv2.INTER_AREA)

    enhanced = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray).astype(np.float32) / 255
    body = body_mask(gray)
    blurred = [shrink(cv2.GaussianBlur(enhanced, (0, 0), s)) for s in (1, 3, 6, 12)]
    inside = shrink(body)
    reference = (blurred[1] * (inside > 0.5)).sum() / max(1.0, float((inside > 0.5).sum()))
    distance = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5) / side
    yy, xx = np.mgrid[0:FEATURE_SIDE, 0:FEATURE_SIDE].astype(np.float32) / FEATURE_SIDE
    cols, rows = np.flatnonzero(body.any(axis=0)), np.flatnonzero(body.any(axis=1))
    left, right = (cols[0], cols[-1]) if len(cols) else (0, side)
    top = rows[0] if len(rows) else 0
    channels = [
        *blurred,
        blurred[1] - reference,
        inside,
        shrink(classical_lungs(gray, body=body)),
        shrink(distance),
        xx,
        yy,
        np.abs(xx - 0.5),
        (xx * side - left) / max(1, right - left),
        (yy * side - top) / side,
    ]
    return np.stack(channels).astype(np.float32)


N_FEATURES = 13


class LungNet(nn.Module):
    """A few convolutions over the feature channels: enough context to close the lung field."""

    def __init__(self, width: int = 24):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(N_FEATURES, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, x):
        return self.body(x)


@dataclass
class LungModel:
    net: LungNet
    trained_on: dict

    @classmethod
    def fit(
        cls,
        images: list[np.ndarray],
        masks: list[np.ndarray],
        epochs: int = 40,
        seed: int = SEED,
        description: str = "",
    ) -> "LungModel":
        """images: uint8 (S, S) films; masks: uint8 0 / 255 lung / 127 ignore (ignored pixels carry no loss)."""

        torch.manual_seed(seed)
        x = torch.from_numpy(np.stack([lung_features(g) for g in track(images, "Lung features", total=len(images))]))

        def shrink(m, v):
            return cv2.resize((m == v).astype(np.float32), (FEATURE_SIDE, FEATURE_SIDE), interpolation=cv2.INTER_AREA)

        y = torch.from_numpy(np.stack([shrink(m, 255) for m in masks]))[:, None]
        weight = torch.from_numpy(np.stack([1.0 - shrink(m, 127) for m in masks]))[:, None]
        net = LungNet()
        optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(seed)
        for _ in track(range(epochs), "Fitting lung model", total=epochs):
            for idx in torch.randperm(len(x), generator=generator).split(16):
                loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx], weight=weight[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return cls(net.eval(), {"images": len(images), "epochs": epochs, "seed": seed, "description": description})

    @torch.inference_mode()
    def predict(self, gray: np.ndarray) -> np.ndarray:
        prob = torch.sigmoid(self.net(torch.from_numpy(lung_features(gray))[None]))[0, 0].numpy()
        side = gray.shape[0]
        full = cv2.resize(prob, (gray.shape[1], side), interpolation=cv2.INTER_LINEAR) > 0.5
        return _two_largest_per_side(full, hull=False)

    def save(self, path: str | Path) -> None:

        buffer = io.BytesIO()
        torch.save(
            {
                "format": MODEL_FORMAT,
                "format_version": 1,
                "state_dict": self.net.state_dict(),
                "trained_on": self.trained_on,
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "LungModel":

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or foreign file: one clear message
            raise CheckpointError(f"cannot read lung model {path}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT or obj.get("format_version") != 1:
            raise CheckpointError(f"{path} is not a pneumocam lung model of a known version")
        net = LungNet()
        net.load_state_dict(obj["state_dict"])
        return cls(net.eval(), dict(obj.get("trained_on", {})))


def dice(estimate: np.ndarray, reference: np.ndarray, ignore: np.ndarray | None = None) -> float:
    if ignore is not None:
        estimate, reference = estimate & ~ignore, reference & ~ignore
    total = estimate.sum() + reference.sum()
    return float(2 * (estimate & reference).sum() / total) if total else 1.0
