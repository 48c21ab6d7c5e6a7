"""Controls of the reliance check (analysis/controls.py): the imputation against a hand-written solve, and phantoms
with known answers: a lesion in the lungs costs more to remove than a shape-matched control; a label outside the lungs
costs as much or more to remove with the control, and the verdict is then not "rests on the lungs"."""

import numpy as np
import pytest
import torch

from pneumocam.analysis.controls import control_regions, impute
from pneumocam.analysis.reliance import reliance_probabilities, reliance_summary, verdict
from pneumocam.data import LoadedImages
from pneumocam.data.discover import Sample
from pneumocam.model.inputs import ModelInputs

SIDE = 64


def test_the_imputation_equals_a_hand_written_solve_on_5x5():
    film = np.arange(25, dtype=np.uint8).reshape(5, 5) * 9
    removed = np.zeros((5, 5), dtype=bool)
    removed[1:4, 1:4] = True
    # By hand: every removed pixel is 1/6 of each direct and 1/12 of each diagonal neighbour (all 8 on the film).
    cells = [(y, x) for y in range(1, 4) for x in range(1, 4)]
    a, b = np.eye(9), np.zeros(9)
    for i, (y, x) in enumerate(cells):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                if (y + dy, x + dx) in cells:
                    a[i, cells.index((y + dy, x + dx))] -= weight
                else:
                    b[i] += weight * float(film[y + dy, x + dx])
    expected = film.astype(float)
    for i, (y, x) in enumerate(cells):
        expected[y, x] = np.linalg.solve(a, b)[i]
    found = impute(film, removed, noise=0.0)
    np.testing.assert_array_equal(found, np.clip(np.rint(expected), 0, 255).astype(np.uint8))
    assert (found[~removed] == film[~removed]).all()


def _films(n: int, where: str):
    """n films per class: a body (grey 150) on black with two dark lung fields (80); PNEUMONIA adds a bright
    blob (230) inside the right lung (where="lungs") or low on the body, below the lungs (where="outside")."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    body = ((yy - 34) / 30) ** 2 + ((xx - 32) / 26) ** 2 <= 1
    lungs = np.zeros((SIDE, SIDE), dtype=bool)
    lungs[10:34, 12:28] = lungs[10:34, 36:52] = True
    films, labels = [], []
    for label in (0, 1) * n:
        film = np.where(body, 150, 0).astype(float) + rng.normal(0, 3, (SIDE, SIDE))
        film[lungs] = 80 + rng.normal(0, 3, lungs.sum())
        if label:
            cy, cx = (22, 44) if where == "lungs" else (50, 32)
            film[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 230
        films.append(np.clip(film, 0, 255).astype(np.uint8))
        labels.append(label)
    samples = [Sample(f"film{i}.png", y, "test", f"p{i}") for i, y in enumerate(labels)]
    loaded = LoadedImages(samples, np.stack(films), [], False)
    return loaded, np.repeat(lungs[None], len(films), axis=0)


class BrightnessReader(torch.nn.Module):
    """Its logit is the share of very bright pixels (grey above 200) on the film, wherever they are."""

    def forward(self, x):
        grey = x[:, :1] * 0.229 + 0.485
        return ((grey > 200 / 255).float().mean(dim=(1, 2, 3)) * 400 - 1)[:, None]


@pytest.mark.parametrize("where", ["lungs", "outside"])
def test_lungs_removed_against_the_control_on_phantoms_with_known_answers(where):
    loaded, lungs = _films(6, where)
    probs = reliance_probabilities(BrightnessReader(), ModelInputs(SIDE), loaded, lungs, 8, "cpu", controls=True)
    summary = reliance_summary(probs, loaded.labels, n_resamples=0)
    kept = summary["share_of_ranking_kept"]
    assert summary["variants"]["whole"]["roc_auc"] == 1.0
    assert np.nanmax(probs["control_overlap"]) <= 0.25  # the controls lie off the lungs
    if where == "lungs":
        assert kept["lungs_removed_fill"] < kept["control_removed_fill"] - 0.5
        assert kept["lungs_removed_impute"] < 0.5  # imputing the lungs removes the blob too
        assert summary["verdict"] == "the decision rests on the lungs"
    else:
        assert kept["control_removed_fill"] <= kept["lungs_removed_fill"]
        assert summary["verdict"] != "the decision rests on the lungs"


def test_the_verdict_needs_the_lungs_to_cost_more_than_the_control():
    lungs_only = {"whole": 0.9, "lungs_removed_fill": 0.55, "only_lungs_fill": 0.9}
    assert verdict(lungs_only)[0] == "the decision rests on the lungs"
    # the lungs' removal keeps 12.5% of the ranking; a control keeping 25% is within the 20-point margin
    assert verdict(lungs_only | {"control_removed_fill": 0.6})[0].startswith("mixed: removing a region")
    assert verdict(lungs_only | {"control_removed_fill": 0.8})[0] == "the decision rests on the lungs"


def test_a_control_region_keeps_the_lungs_shape_and_area():
    lungs = np.zeros((SIDE, SIDE), dtype=bool)
    lungs[10:30, 12:28] = True
    body = np.ones((SIDE, SIDE), dtype=bool)
    regions, overlap = control_regions(lungs, body, draws=2)
    assert len(regions) == 2 and overlap == 0.0
    for region in regions:
        assert region.sum() == lungs.sum() and not (region & lungs).any()
        ys, xs = np.nonzero(region)
        assert (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == (20, 16)


def test_map_agreement_is_spearman_of_lung_share_and_the_explained_class_s_drop():
    from scipy.stats import spearmanr

    from pneumocam.analysis.reliance import map_agreement

    share = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2])
    whole = np.array([0.875, 0.75, 0.75, 0.25, 0.25, 0.625])  # eighths: the hand's ties are ties in binary too
    removed = np.array([0.75, 0.5, 0.125, 0.375, 0.875, 0.5])
    targets = np.array([1, 1, 1, 0, 0, 1])
    # by hand: PNEUMONIA's drop is p - p', NORMAL's (1 - p) - (1 - p')
    drop = [0.125, 0.25, 0.625, 0.125, 0.625, 0.125]
    found = map_agreement(share, {"whole": whole, "lungs_removed_fill": removed}, targets, "gradcam")
    assert found["spearman"] == pytest.approx(spearmanr(share, drop).statistic)
    assert found["n_films"] == 6


def test_a_moved_mask_is_each_pixel_shifted_by_hand_and_dropped_off_the_film():
    """_moved against a pixel-by-pixel shift on a non-square mask, for every move that keeps any pixel and moves past
    the film's size (which once counted its slices from the other end)."""
    from pneumocam.analysis.controls import _moved

    mask = np.zeros((4, 5), dtype=bool)
    mask[[0, 1, 3, 3], [0, 2, 4, 1]] = True
    for dy in range(-5, 6):
        for dx in range(-6, 7):
            expected = np.zeros_like(mask)
            for y, x in zip(*np.nonzero(mask), strict=True):
                if 0 <= y + dy < 4 and 0 <= x + dx < 5:
                    expected[y + dy, x + dx] = True
            np.testing.assert_array_equal(_moved(mask, dy, dx), expected, err_msg=f"{dy}, {dx}")


def _notched_band():
    """16 x 16: the lungs fill rows 0-3 but for a notch at (3, 0) and (3, 1): 62 pixels, not symmetric top to bottom."""
    lungs = np.zeros((16, 16), dtype=bool)
    lungs[0:4] = True
    lungs[3, 0:2] = False
    return lungs


def test_control_regions_by_hand_when_the_body_lies_below_the_lungs():
    """The body is rows 0-7 and the lungs rows 0-3 (62 px, notched). Moves come in steps of 2 (16 // 8). A control
    must keep 50 of 62 pixels on the film and half of those on the body. Worked out by hand: the only moves without
    overlap are down by 4 (with dx 0 or +-2; +-4 keeps under 50) and down by 6 (rows 6-7 hold 32 of 62 on the body;
    with dx -2, 28 of 56); the mirrored lungs (rows 12-15) are off the body unmoved and reach it at dy -8. Ordered
    by overlap, then |dy| + |dx|, then the order tried (dy, then dx, from -16): (4, 0), (4, -2), (4, 2), (6, 0),
    then (6, -2), which keeps 56 pixels on the film and exactly half of them, 28, on the body (the mirror moved up
    6, nearer, lies 30 of 62 on the body: refused)."""
    lungs = _notched_band()
    body = np.zeros((16, 16), dtype=np.uint8)
    body[:8] = 255  # a 0/255 mask, as mask files hold them
    regions, overlap = control_regions((lungs * 255).astype(np.uint8), body, draws=5)
    expected = [np.zeros((16, 16), dtype=bool) for _ in range(5)]
    expected[0][4:8] = lungs[0:4]
    expected[1][4:8, 0:14] = lungs[0:4, 2:16]
    expected[2][4:8, 2:16] = lungs[0:4, 0:14]
    expected[3][6:10] = lungs[0:4]
    expected[4][6:10, 0:14] = lungs[0:4, 2:16]
    assert overlap == 0.0 and len(regions) == 5
    for found, wanted in zip(regions, expected, strict=True):
        np.testing.assert_array_equal(found, wanted)


def test_control_regions_by_hand_when_only_the_mirrored_lungs_fit_unmoved():
    """The body is rows 8-15: the lungs (rows 0-3) mirrored top to bottom lie on rows 12-15, on the body, unmoved
    (distance 0, overlap 0): the first control is the mirror itself, notch on top; the lungs themselves need dy 8."""
    lungs = _notched_band()
    body = np.zeros((16, 16), dtype=bool)
    body[8:] = True
    regions, overlap = control_regions(lungs, body, draws=1)
    assert overlap == 0.0 and len(regions) == 1
    np.testing.assert_array_equal(regions[0], lungs[::-1])


def test_control_regions_fall_back_to_the_least_overlapping_move_with_its_overlap():
    """Lungs over rows 0-11 (192 px), body everywhere: every move that keeps 80% on the film overlaps them by more
    than a quarter, so the one control is the least overlapping: the mirror (rows 4-15) moved down 2, on rows 6-15,
    overlapping rows 6-11: 96 / 192 = 0.5 (by hand: lungs moved down 6 also overlap 0.5 but move further; moves
    sideways or by 8 keep under 80%)."""
    lungs = np.zeros((16, 16), dtype=bool)
    lungs[:12] = True
    regions, overlap = control_regions(lungs, np.ones((16, 16), dtype=bool), draws=2)
    expected = np.zeros((16, 16), dtype=bool)
    expected[6:] = True
    assert overlap == 0.5 and len(regions) == 1
    np.testing.assert_array_equal(regions[0], expected)


def test_control_regions_without_lungs_or_without_any_move_on_the_body_are_empty_with_nan():
    lungs = np.zeros((16, 16), dtype=bool)
    regions, overlap = control_regions(lungs, np.ones((16, 16), dtype=bool))
    assert regions == [] and np.isnan(overlap)
    lungs[5, 5] = True  # one pixel is a lung: it gets controls
    regions, overlap = control_regions(lungs, np.ones((16, 16), dtype=bool), draws=2)
    assert len(regions) == 2 and overlap == 0.0 and all(r.sum() == 1 for r in regions)
    regions, overlap = control_regions(lungs, np.zeros((16, 16), dtype=bool))  # no body: no move is allowed
    assert regions == [] and np.isnan(overlap)


def _weights_on_film(y, x, h, w):
    """The ROAD neighbours of (y, x) on an h x w film with their weights, renormalised to sum to 1."""
    found = {}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy or dx) and 0 <= y + dy < h and 0 <= x + dx < w:
                found[(y + dy, x + dx)] = 1 / 12 if dy and dx else 1 / 6
    total = sum(found.values())
    return {k: v / total for k, v in found.items()}


def test_the_imputation_at_the_film_s_edge_and_corner_renormalises_the_weights_by_hand():
    """Removed pixels on the top edge, in the corner and next to each other, on a 4 x 5 film: each is the weighted mean
    of its neighbours on the film (a corner has three: weights 1/6, 1/6, 1/12 scaled to sum to 1), a linear system
    solved with numpy; the result is uint8 like the film."""
    film = (np.arange(20, dtype=np.uint8).reshape(4, 5) * 12 + 7).astype(np.uint8)
    removed = np.zeros((4, 5), dtype=bool)
    removed[0, 0] = removed[0, 1] = removed[0, 3] = removed[3, 4] = removed[2, 4] = True
    cells = [tuple(c) for c in np.argwhere(removed)]
    a, b = np.eye(len(cells)), np.zeros(len(cells))
    for i, (y, x) in enumerate(cells):
        for (ny, nx), weight in _weights_on_film(y, x, 4, 5).items():
            if (ny, nx) in cells:
                a[i, cells.index((ny, nx))] -= weight
            else:
                b[i] += weight * float(film[ny, nx])
    expected = film.astype(float)
    for (y, x), value in zip(cells, np.linalg.solve(a, b), strict=True):
        expected[y, x] = value
    found = impute(film, removed, noise=0.0)
    assert found.dtype == np.uint8
    np.testing.assert_array_equal(found, np.clip(np.rint(expected), 0, 255).astype(np.uint8))


def test_the_imputation_s_noise_is_gaussian_with_its_spread_seeded_and_kept_in_grey_levels():
    """A 40 x 40 film of grey 100 with its middle 20 x 20 removed: the noise-free imputation is 100 there, so with noise
    the removed pixels differ from 100 by a seeded Gaussian draw of mean 0 and spread 2 (rounded: sd sqrt(4 + 1/12) by
    hand); the same seed gives the same film, another seed another. On a white and a black film the imputed values stay
    in 0-255 (clipped, never wrapped)."""
    removed = np.zeros((40, 40), dtype=bool)
    removed[10:30, 10:30] = True
    grey = np.full((40, 40), 100, dtype=np.uint8)
    assert (impute(grey, removed, noise=0.0) == 100).all()
    noisy = impute(grey, removed, noise=2.0, seed=3)
    difference = noisy[removed].astype(float) - 100
    assert abs(difference.mean()) < 0.3 and abs(difference.std() - np.sqrt(4 + 1 / 12)) < 0.3
    assert (noisy[~removed] == 100).all() and noisy.dtype == np.uint8
    assert (impute(grey, removed, noise=2.0, seed=3) == noisy).all()
    assert (impute(grey, removed, noise=2.0, seed=4) != noisy).any()
    white, black = np.full((40, 40), 255, dtype=np.uint8), np.zeros((40, 40), dtype=np.uint8)
    assert impute(white, removed, noise=2.0)[removed].min() >= 245  # 5 sd below 255; a wrapped 256 would read 0
    assert impute(black, removed, noise=2.0)[removed].max() <= 10  # a wrapped -1 would read 255


def test_nothing_removed_returns_the_film_itself_as_a_uint8_copy():
    film = np.arange(12, dtype=np.float64).reshape(3, 4) * 20
    found = impute(film, np.zeros((3, 4), dtype=bool))
    assert found.dtype == np.uint8 and found.tolist() == film.astype(np.uint8).tolist()
    found[0, 0] = 99
    assert film[0, 0] == 0.0  # a copy: the caller's film is untouched


def test_control_regions_on_a_small_film_step_by_one_pixel_and_their_bounds_are_inclusive():
    """A 9 px film moves in steps of 1 (max(1, 9 // 8)). One lung pixel at the centre (4, 4), its own mirror: the
    nearest control is the first move by one tried, up: (3, 4). And the bounds hold with equality (each move below is
    a control only because of it): a 1 x 5 bar moved down 1 and left 1 keeps exactly 80% on the film; a 1 x 4 bar moved
    down 1 onto a body of two columns lies exactly half on it; a 2 x 2 block moved diagonally by 1 overlaps the lungs
    by exactly a quarter."""
    side = 9
    everywhere = np.ones((side, side), dtype=bool)

    def mask(cells):
        out = np.zeros((side, side), dtype=bool)
        for y, x in cells:
            out[y, x] = True
        return out

    def among(regions, wanted):
        return any(np.array_equal(r, wanted) for r in regions)

    regions, _ = control_regions(mask([(4, 4)]), everywhere, draws=1)
    np.testing.assert_array_equal(regions[0], mask([(3, 4)]))
    bar5 = mask([(4, x) for x in range(5)])
    assert among(control_regions(bar5, everywhere, draws=10_000)[0], mask([(5, x) for x in range(4)]))
    bar4, two_columns = mask([(4, x) for x in range(4)]), np.zeros((side, side), dtype=bool)
    two_columns[:, :2] = True
    assert among(control_regions(bar4, two_columns, draws=10_000)[0], mask([(5, x) for x in range(4)]))
    block = mask([(3, 3), (3, 4), (4, 3), (4, 4)])
    assert among(control_regions(block, everywhere, draws=10_000)[0], mask([(4, 4), (4, 5), (5, 4), (5, 5)]))
