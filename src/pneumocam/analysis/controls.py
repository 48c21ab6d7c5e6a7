"""Controls for the decision-reliance check (analysis/reliance.py): what removing the lungs costs is compared with
what removing a region of the same shape and area elsewhere on the body costs, and the removal is also done by
imputation, so neither the size of the removed part nor its grey outline can pass for the lungs' own contribution.

- Shape-matched control: the lung mask L moved (and, where needed, mirrored top to bottom) to where it overlaps the
  lungs least while staying on the film and mostly on the body; CONTROL_DRAWS such moves per film, the best first.
  The film's control probability is the mean over its draws.
- Noisy linear imputation (ROAD: Rong et al., ICML 2022, "A Consistent and Efficient Evaluation Strategy for
  Attribution Methods"): every removed pixel x_i is the weighted mean of its eight neighbours (1/6 for the four
  direct ones, 1/12 for the diagonals; kept pixels are fixed), a sparse linear system
      x_i - sum_j w_ij x_j = 0   (i removed; j over the neighbours on the film)
  solved exactly, then Gaussian noise of IMPUTE_NOISE grey levels added: a removal with no constant-grey shape.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from pneumocam.core.defaults import SEED

CONTROL_DRAWS = 2
MAX_OVERLAP = 0.25  # of the lung area: a move overlapping the lungs more is not a control
IMPUTE_NOISE = 2.0  # grey levels (ROAD adds a small noise so the imputed region carries no smooth tell)
NEIGHBOURS = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6)]
NEIGHBOURS += [(-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]


def _moved(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The mask shifted by (dy, dx), what leaves the film dropped."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out  # wholly off the film (a further move would make the slices below count from the other end)
    src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def control_regions(lungs: np.ndarray, body: np.ndarray, draws: int = CONTROL_DRAWS) -> tuple[list[np.ndarray], float]:
    """(up to `draws` shape-matched control masks, their mean overlap with the lungs as a share of the lung area).
    Candidates: L and L mirrored top to bottom, moved on a grid of an eighth of the side; kept when at least 80% of
    the area stays on the film and half of it on the body; ordered by overlap with the lungs, then distance moved."""
    lungs, body = np.asarray(lungs, dtype=bool), np.asarray(body, dtype=bool)
    area = int(lungs.sum())
    if area == 0:
        return [], float("nan")
    side, step = lungs.shape[0], max(1, lungs.shape[0] // 8)
    scored = []
    for base in (lungs, lungs[::-1]):
        for dy in range(-side, side + 1, step):
            for dx in range(-side, side + 1, step):
                moved = _moved(base, dy, dx)
                kept = int(moved.sum())
                if kept < 0.8 * area or (moved & body).sum() < 0.5 * kept:
                    continue
                overlap = float((moved & lungs).sum() / area)
                scored.append((overlap, abs(dy) + abs(dx), moved))
    scored.sort(key=lambda item: item[:2])
    chosen = [c for c in scored if c[0] <= MAX_OVERLAP][:draws] or scored[:1]
    return [c[2] for c in chosen], float(np.mean([c[0] for c in chosen])) if chosen else float("nan")


def impute(gray: np.ndarray, removed: np.ndarray, noise: float = IMPUTE_NOISE, seed: int = SEED) -> np.ndarray:
    """The film (uint8) with the `removed` pixels replaced by ROAD's noisy linear imputation (module docstring)."""
    x = np.asarray(gray, dtype=np.float64)
    removed = np.asarray(removed, dtype=bool)
    h, w = x.shape
    unknown = np.flatnonzero(removed.ravel())
    if not len(unknown):
        return np.asarray(gray, dtype=np.uint8).copy()
    number = -np.ones(h * w, dtype=np.int64)
    number[unknown] = np.arange(len(unknown))
    rows, cols, vals = list(range(len(unknown))), list(range(len(unknown))), [1.0] * len(unknown)
    rhs = np.zeros(len(unknown))
    ys, xs = np.divmod(unknown, w)
    for dy, dx, weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        total = weight / _weight_on_film(ys, xs, h, w)  # weights renormalised over the neighbours on the film
        flat = np.where(inside, ny * w + nx, 0)
        neighbour = np.where(inside, number[flat], -1)
        known = inside & (neighbour < 0)
        np.add.at(rhs, np.flatnonzero(known), (total * x.ravel()[flat])[known])
        free = inside & (neighbour >= 0)
        rows += np.flatnonzero(free).tolist()
        cols += neighbour[free].tolist()
        vals += (-total[free]).tolist()
    system = coo_matrix((vals, (rows, cols)), shape=(len(unknown), len(unknown))).tocsr()
    solved = spsolve(system, rhs)
    out = x.ravel().copy()
    out[unknown] = solved + np.random.default_rng(seed).normal(0.0, noise, len(unknown)) if noise else solved
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w)


def _weight_on_film(ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> np.ndarray:
    total = np.zeros(len(ys))
    for dy, dx, weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        total += weight * ((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))
    return total
