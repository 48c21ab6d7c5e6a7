"""Reference masks laid out like ../shared/data/kermany224-lungmasks: MASKS/{split}/{CLASS}/<image stem>.png, 0
background, 255 region, 127 ignore (left out of every share)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pneumocam import CLASS_NAMES
from pneumocam.data import Sample
from pneumocam.data.readers import UnreadableImage, read_grayscale, resize_square


def load_masks(mask_root: str | Path, samples: list[Sample], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks bool (N, size, size), found bool (N,)): images without a readable mask get an empty one."""
    masks, found, _ = load_masks_and_ignore(mask_root, samples, size)
    return masks, found


def load_masks_and_ignore(
    mask_root: str | Path, samples: list[Sample], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(region bool, found bool (N,), ignore bool): the region is the clear 255 pixels after a bilinear resize (as
    always), ignore the 127 pixels after a nearest resize (a bilinear edge between 0 and 255 is not "ignore")."""

    masks = np.zeros((len(samples), size, size), dtype=bool)
    ignore = np.zeros((len(samples), size, size), dtype=bool)
    found = np.zeros(len(samples), dtype=bool)
    for i, sample in enumerate(samples):
        path = mask_path(mask_root, sample)
        if not path.is_file():
            continue
        try:
            raw = read_grayscale(path)
        except UnreadableImage:
            continue
        masks[i] = resize_square(raw, size) > 191  # nearest-like: only clear "region" pixels
        nearest = np.asarray(Image.fromarray(raw).resize((size, size), Image.Resampling.NEAREST))
        ignore[i] = (nearest > 63) & (nearest <= 191) & ~masks[i]
        found[i] = True
    return masks, found, ignore


def mask_path(mask_root: str | Path, sample: Sample) -> Path:
    return Path(mask_root) / sample.split / CLASS_NAMES[sample.label] / f"{Path(sample.path).stem}.png"
