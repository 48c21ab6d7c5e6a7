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
