"""Region masks and where a map's mass falls: share inside a mask, and the pointing game.

Masks are laid out like ../shared/data/kermany224-lungmasks: MASKS/{split}/{CLASS}/<image stem>.png,
0 background, 255 region, 127 ignore (counted as outside the region).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CLASS_NAMES
from .data import Sample
from .data.readers import UnreadableImage, read_grayscale, resize_square


def mask_path(mask_root: str | Path, sample: Sample) -> Path:
    return Path(mask_root) / sample.split / CLASS_NAMES[sample.label] / f"{Path(sample.path).stem}.png"


def load_masks(mask_root: str | Path, samples: list[Sample], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks bool (N, size, size), found bool (N,)): images without a readable mask get an empty one."""
    masks = np.zeros((len(samples), size, size), dtype=bool)
    found = np.zeros(len(samples), dtype=bool)
    for i, sample in enumerate(samples):
        path = mask_path(mask_root, sample)
        if not path.is_file():
            continue
        try:
            masks[i] = resize_square(read_grayscale(path), size) > 191  # nearest-like: only clear "region" pixels
            found[i] = True
        except UnreadableImage:
            continue
    return masks, found


def mass_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each (non-negative) map's total mass inside its mask; NaN for an all-zero map."""
    maps = np.maximum(maps, 0).reshape(len(maps), -1).astype(np.float64)
    inside = (maps * masks.reshape(len(masks), -1)).sum(axis=1)
    total = maps.sum(axis=1)
    return np.divide(inside, total, out=np.full(len(maps), np.nan), where=total > 0)


def area_share(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(len(masks), -1).mean(axis=1)


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each map's maximum lies inside its mask (ties: the first maximum in row-major order)."""
    flat = maps.reshape(len(maps), -1)
    peak = np.argmax(flat, axis=1)
    return masks.reshape(len(masks), -1)[np.arange(len(maps)), peak]
