"""Region masks and where a map's mass falls: share inside a mask, and the pointing game.

Masks are laid out like ../shared/data/kermany224-lungmasks: MASKS/{split}/{CLASS}/<image stem>.png,
0 background, 255 region, 127 ignore (counted as outside the region).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """1.0 where a map's maximum lies inside its mask, 0.0 where not (ties: the first maximum in row-major order),
    NaN for an empty map (no positive value): it points nowhere, so it is neither a hit nor a miss."""
    flat = maps.reshape(len(maps), -1)
    peak = np.argmax(flat, axis=1)
    hit = masks.reshape(len(masks), -1)[np.arange(len(maps)), peak].astype(float)
    hit[~(flat > 0).any(axis=1)] = np.nan
    return hit


# ----------------------------------------------------------------------------------------- anatomical regions

REGIONS = ("lungs", "diaphragm", "body_other", "outside_body")
REGION_TEXT = {
    "lungs": "lung fields (incl. behind the heart)",
    "diaphragm": "a band just below each lung's lower border",
    "body_other": "the body outside the lungs and the diaphragm band (mediastinum, shoulders, abdomen)",
    "outside_body": "the blank border outside the body, with burnt-in text and markers",
}


def diaphragm_band(lungs: np.ndarray, height: int) -> np.ndarray:
    """A strip `height` pixels tall just below the lowest lung pixel of every column, per lung."""
    import cv2

    band = np.zeros(lungs.shape, dtype=bool)
    n, labels = cv2.connectedComponents(lungs.astype(np.uint8), connectivity=8)
    rows = np.arange(lungs.shape[0])[:, None]
    for i in range(1, n):
        component = labels == i
        columns = component.any(axis=0)
        bottom = np.where(columns, lungs.shape[0] - 1 - np.argmax(component[::-1], axis=0), -1)
        band |= columns & (rows > bottom) & (rows <= bottom + height)
    return band


def partition(body: np.ndarray, lungs: np.ndarray, band_height: int) -> dict[str, np.ndarray]:
    """Lungs, diaphragm band, rest of body, outside body: disjoint, and together the whole image."""
    band = diaphragm_band(lungs, band_height) & ~lungs
    return {"lungs": lungs, "diaphragm": band, "body_other": body & ~lungs & ~band, "outside_body": ~body & ~lungs & ~band}


@dataclass
class AttentionMeasures:
    """Per image: share of map mass in each region, that share over the region's area share, pointing game."""

    shares: dict[str, np.ndarray]
    ratios: dict[str, np.ndarray]
    areas: dict[str, np.ndarray]
    pointing_lungs: np.ndarray
    lung_source: list[str]

    def columns(self) -> dict[str, np.ndarray]:
        out = {f"share_{r}": v for r, v in self.shares.items()}
        out |= {f"ratio_{r}": v for r, v in self.ratios.items()}
        out |= {f"area_{r}": v for r, v in self.areas.items()}
        out["pointing_lungs"] = self.pointing_lungs
        return out


def attention_measures(maps: np.ndarray, grays: np.ndarray, lung_masks: np.ndarray, lung_found: np.ndarray,
                       estimator=None, band_fraction: float = 0.06) -> AttentionMeasures:
    """maps: (N, S, S) upsampled, non-negative; grays: the films; lungs from masks where found, else estimated."""
    from .lungs import body_mask, classical_lungs

    n, side = len(maps), maps.shape[-1]
    shares = {r: np.full(n, np.nan) for r in REGIONS}
    ratios = {r: np.full(n, np.nan) for r in REGIONS}
    areas = {r: np.zeros(n) for r in REGIONS}
    pointing = np.full(n, np.nan)
    sources = []
    for i in range(n):
        gray = np.asarray(grays[i])
        body = body_mask(gray)
        if lung_found[i]:
            lungs, source = lung_masks[i], "mask"
        elif estimator is not None:
            lungs, source = estimator.predict(gray), "estimated (learned model)"
        else:
            lungs, source = classical_lungs(gray, body=body), "estimated (classical)"
        sources.append(source)
        parts = partition(body | lungs, lungs, max(1, int(round(band_fraction * side))))
        stacked = np.stack([parts[r] for r in REGIONS])
        share = mass_share(np.repeat(maps[i:i + 1], len(REGIONS), axis=0), stacked)
        area = area_share(stacked)
        for j, r in enumerate(REGIONS):
            shares[r][i], areas[r][i] = share[j], area[j]
            ratios[r][i] = share[j] / area[j] if area[j] > 0 else np.nan
        pointing[i] = pointing_game(maps[i:i + 1], lungs[None])[0]
    return AttentionMeasures(shares, ratios, areas, pointing, sources)
