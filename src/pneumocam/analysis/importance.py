"""Per-image importance scores from Grad-CAM maps, each named by its normalisation.

Why they differ: the original write-up divided each map by its own maximum and then averaged it.
After that division every map peaks at 1, so the mean no longer measures how strong the evidence
is; it measures how spread out the map is (a diffuse map scores high, a sharp focal map low).
`mean_raw` keeps the strength; `top10_mass` measures concentration directly.
"""

from __future__ import annotations

import numpy as np

from pneumocam import CLASS_NAMES
from pneumocam.explain.cam import upsample

SCORES = {
    "mean_raw": "mean of the raw Grad-CAM map (after ReLU, no normalisation): strength of the evidence",
    "mean_maxnorm": "mean of the map divided by its own maximum (the original write-up's score): spread more than "
    "strength",
    "mean_minmaxnorm": "mean of the per-image min-max normalised map: also spread more than strength",
    "top10_mass": "share of the map's total mass in its top 10% pixels: concentration (0.1 for a uniform map)",
}


def empty_maps(maps: np.ndarray) -> np.ndarray:
    """Maps with no positive value (the ReLU removed everything): they point nowhere and carry no score."""
    return ~(maps.reshape(len(maps), -1) > 0).any(axis=1)


def empty_summary(maps: np.ndarray, labels: np.ndarray) -> dict:
    """How many maps are empty, per class: results.json's "empty_maps"."""

    empty = empty_maps(maps)
    return {
        "n": int(empty.sum()),
        "by_class": {CLASS_NAMES[c]: int(empty[labels == c].sum()) for c in (0, 1)},
        "note": "maps with no positive value: no score, no pointing-game outcome, left out of the statistics",
    }


ATTENTION_TESTED = ("share_lungs", "share_outside_body", "ratio_lungs", "ratio_outside_body")


def compared_scores(scores: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, np.ndarray]:
    """The scores a run compares between classes: the importance scores, the main region measures, and each
    ground-truth mask's mass share where both classes have at least two values."""

    def both_classes(v):
        return all(np.isfinite(v[labels == c]).sum() >= 2 for c in (0, 1))

    return {
        k: v
        for k, v in scores.items()
        if k in SCORES or k in ATTENTION_TESTED or (k.endswith("_mass_share") and both_classes(v))
    }


def importance_scores(
    maps: np.ndarray, image_size: int, chunk: int = 256, normalised: bool = False
) -> dict[str, np.ndarray]:
    """Scores for (N, h, w) maps, computed on the maps upsampled to the input size.

    Empty maps score NaN everywhere (not 0: an empty map is no evidence, not weak evidence), so statistics
    leave them out. normalised=True (maps a library already scaled per image) leaves mean_raw NaN: nothing
    named raw may come from a normalised map.
    """
    out = {name: np.empty(len(maps), dtype=np.float64) for name in SCORES}
    for start in range(0, len(maps), chunk):
        up = (
            upsample(maps[start : start + chunk], image_size)
            .reshape(min(chunk, len(maps) - start), -1)
            .astype(np.float64)
        )
        up = np.maximum(up, 0.0)  # bilinear upsampling of a non-negative map stays non-negative; guard rounding
        high, low, total = up.max(axis=1), up.min(axis=1), up.sum(axis=1)
        k = max(1, int(round(0.1 * up.shape[1])))
        top = np.partition(up, up.shape[1] - k, axis=1)[:, -k:].sum(axis=1)
        part = slice(start, start + len(up))
        out["mean_raw"][part] = up.mean(axis=1)
        out["mean_maxnorm"][part] = np.divide(up.mean(axis=1), high, out=np.zeros(len(up)), where=high > 0)
        span = high - low
        out["mean_minmaxnorm"][part] = np.divide(up.mean(axis=1) - low, span, out=np.zeros(len(up)), where=span > 0)
        out["top10_mass"][part] = np.divide(top, total, out=np.full(len(up), np.nan), where=total > 0)
    empty = empty_maps(maps)
    for values in out.values():
        values[empty] = np.nan
    if normalised:
        out["mean_raw"][:] = np.nan
    return out
