"""Region masks and where a map's mass falls: share inside a mask, and the pointing game.

Masks are laid out like ../shared/data/kermany224-lungmasks: MASKS/{split}/{CLASS}/<image stem>.png,
0 background, 255 region, 127 ignore (a device over the lung, say). Ignore pixels are left out of every share:
the map's mass on them counts in neither the numerator nor the denominator, and they count in no region's area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pneumocam import CLASS_NAMES
from pneumocam.anatomy.lungs import LungModel, body_mask, classical_lungs
from pneumocam.core.schema import REGIONS
from pneumocam.data import Sample
from pneumocam.data.masks import load_masks_and_ignore
from pneumocam.explain.cam import upsample


def mass_share(maps: np.ndarray, masks: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Share of each (non-negative) map's total mass inside its mask, ignore pixels left out of both; NaN for an
    all-zero map."""
    maps = np.maximum(maps, 0).reshape(len(maps), -1).astype(np.float64)
    if ignore is not None:
        maps = maps * ~ignore.reshape(len(ignore), -1)
    inside = (maps * masks.reshape(len(masks), -1)).sum(axis=1)
    total = maps.sum(axis=1)
    return np.divide(inside, total, out=np.full(len(maps), np.nan), where=total > 0)


def area_share(masks: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Each mask's share of the image's pixels (of the pixels not ignored, when ignore is given)."""
    flat = masks.reshape(len(masks), -1)
    if ignore is None:
        return flat.mean(axis=1)
    kept = ~ignore.reshape(len(ignore), -1)
    counts = kept.sum(axis=1)
    return (flat & kept).sum(axis=1) / np.maximum(counts, 1)  # every pixel ignored: 0 of 0 kept counts as 0


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """1.0 where a map's maximum lies inside its mask, 0.0 where not (ties: the first maximum in row-major order),
    NaN for an empty map (no positive value): it points nowhere, so it is neither a hit nor a miss."""
    flat = maps.reshape(len(maps), -1)
    peak = np.argmax(flat, axis=1)
    hit = masks.reshape(len(masks), -1)[np.arange(len(maps)), peak].astype(float)
    hit[~(flat > 0).any(axis=1)] = np.nan
    return hit


# ----------------------------------------------------------------------------------------- anatomical regions


def diaphragm_band(lungs: np.ndarray, height: int) -> np.ndarray:
    """A strip `height` pixels tall just below the lowest lung pixel of every column, per lung."""

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
    return {
        "lungs": lungs,
        "diaphragm": band,
        "body_other": body & ~lungs & ~band,
        "outside_body": ~body & ~lungs & ~band,
    }


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


def attention_measures(
    maps: np.ndarray,
    grays: np.ndarray,
    lung_masks: np.ndarray,
    lung_found: np.ndarray,
    estimator=None,
    band_fraction: float = 0.06,
    bodies: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
) -> AttentionMeasures:
    """maps: (N, S, S) upsampled, non-negative; grays: the films; lungs from masks where found, else estimated;
    bodies: the films' body masks where the caller already has them (else computed here); ignore: the masks' ignore
    pixels (left out of every share, area and the pointing game)."""

    n, side = len(maps), maps.shape[-1]
    shares = {r: np.full(n, np.nan) for r in REGIONS}
    ratios = {r: np.full(n, np.nan) for r in REGIONS}
    areas = {r: np.zeros(n) for r in REGIONS}
    pointing = np.full(n, np.nan)
    sources = []
    for i in range(n):
        gray = np.asarray(grays[i])
        body = body_mask(gray) if bodies is None else bodies[i]
        if lung_found[i]:
            lungs, source = lung_masks[i], "mask"
        elif estimator is not None:
            lungs, source = estimator.predict(gray), "estimated (learned model)"
        else:
            lungs, source = classical_lungs(gray, body=body), "estimated (classical)"
        sources.append(source)
        parts = partition(body | lungs, lungs, max(1, int(round(band_fraction * side))))
        stacked = np.stack([parts[r] for r in REGIONS])
        left_out = None if ignore is None or not lung_found[i] else np.repeat(ignore[i : i + 1], len(REGIONS), axis=0)
        share = mass_share(np.repeat(maps[i : i + 1], len(REGIONS), axis=0), stacked, left_out)
        area = area_share(stacked, left_out)
        for j, r in enumerate(REGIONS):
            shares[r][i], areas[r][i] = share[j], area[j]
            ratios[r][i] = share[j] / area[j] if area[j] > 0 else np.nan
        kept = maps[i : i + 1] if left_out is None else maps[i : i + 1] * ~left_out[:1]
        pointing[i] = pointing_game(kept, lungs[None])[0]
    return AttentionMeasures(shares, ratios, areas, pointing, sources)


# ----------------------------------------------------------------------------------------- per-split measures


def mask_measures(root: str | Path, samples: list[Sample], maps: np.ndarray, size: int, chunk: int = 128):
    """Per image: share of map mass in the mask, pointing-game hit, whether a non-empty mask exists, mask area share.
    Maps are upsampled a chunk at a time, so memory does not grow with the split."""

    n = len(samples)
    share, hit, area = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    found = np.zeros(n, dtype=bool)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        masks, present, ignore = load_masks_and_ignore(root, samples[part], size)
        present &= masks.reshape(len(masks), -1).any(axis=1)
        up = upsample(maps[part], size) * ~ignore
        share[part] = np.where(present, mass_share(up, masks, ignore), np.nan)
        hit[part] = np.where(present, pointing_game(up, masks), np.nan)
        area[part], found[part] = area_share(masks, ignore), present
    return share, hit, found, area


def ground_truth_summary(share: np.ndarray, hit: np.ndarray, found: np.ndarray, area: np.ndarray) -> dict:
    """A mask's row in results.json: images with the mask, mean mass and area shares, pointing-game hit rate."""
    if not found.any():
        return {"images_with_mask": 0, "mean_mass_share": None, "mean_area_share": None, "pointing_game_hit_rate": None}
    return {
        "images_with_mask": int(found.sum()),
        "mean_mass_share": float(np.nanmean(share[found])),
        "mean_area_share": float(area[found].mean()),
        "pointing_game_hit_rate": float(np.nanmean(hit[found])),
    }


def split_attention(
    loaded,
    maps: np.ndarray,
    size: int,
    labels: np.ndarray,
    lung_root: str | None = None,
    lung_model: str | None = None,
    chunk: int = 128,
) -> tuple[dict[str, np.ndarray], dict, list[str]]:
    """Region measures for every image of a split: (per-image columns, per-class means, lung source per image).
    Lungs come from masks under lung_root where present, else from lung_model, else the classical estimate."""

    estimator = LungModel.load(lung_model) if lung_model else None
    columns, sources = {}, []
    for start in range(0, len(maps), chunk):
        part = slice(start, start + chunk)
        samples = loaded.samples[part]
        if lung_root:
            lung_masks, found, ignore = load_masks_and_ignore(lung_root, samples, size)
        else:
            lung_masks, found = np.zeros((len(samples), size, size), dtype=bool), np.zeros(len(samples), dtype=bool)
            ignore = None
        measures = attention_measures(
            upsample(maps[part], size), np.asarray(loaded.images[part]), lung_masks, found, estimator, ignore=ignore
        )
        for name, values in measures.columns().items():
            columns.setdefault(name, []).append(values)
        sources += measures.lung_source
    columns = {k: np.concatenate(v) for k, v in columns.items()}

    def by_class(prefix):
        return {
            CLASS_NAMES[c]: {r: float(np.nanmean(columns[f"{prefix}_{r}"][labels == c])) for r in REGIONS}
            for c in (0, 1)
        }

    summary = {
        "mean_share_by_class": by_class("share"),
        "mean_ratio_by_class": by_class("ratio"),
        "mean_area_by_class": by_class("area"),
        "pointing_lungs_by_class": {
            CLASS_NAMES[c]: float(np.nanmean(columns["pointing_lungs"][labels == c])) for c in (0, 1)
        },
        "lung_sources": {s: sources.count(s) for s in sorted(set(sources))},
        "estimated": any(s != "mask" for s in sources),
    }
    return columns, summary, sources
