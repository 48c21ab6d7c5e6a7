"""Known answers for where a map falls, body and diaphragm regions, lung estimates, and the trust checks."""

import numpy as np
import pytest

from pneumocam.analysis.regions import (
    REGIONS,
    area_share,
    attention_measures,
    diaphragm_band,
    mass_share,
    partition,
    pointing_game,
    split_attention,
)
from pneumocam.anatomy.lungs import LungModel, body_mask, classical_lungs, dice, fill_holes
from pneumocam.data.phantoms import make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(np.random.default_rng(21), 1, 128, marker=True)


def test_a_map_equal_to_the_lesion_hits_and_puts_all_mass_there(phantom):
    heat = phantom.lesion.astype(np.float32)[None]
    assert mass_share(heat, phantom.lesion[None])[0] == pytest.approx(1.0)
    assert pointing_game(heat, phantom.lesion[None])[0]


def test_a_uniform_map_gives_area_proportional_shares(phantom):
    heat = np.ones((1, 128, 128), np.float32)
    for region in (phantom.lungs, phantom.lesion, phantom.marker):
        assert mass_share(heat, region[None])[0] == pytest.approx(area_share(region[None])[0])
    measures = attention_measures(heat, phantom.image[None], phantom.lungs[None], np.array([True]))
    assert all(measures.ratios[r][0] == pytest.approx(1.0) for r in REGIONS)
    assert sum(measures.shares[r][0] for r in REGIONS) == pytest.approx(1.0)


def test_a_map_on_the_marker_lands_outside_the_body_and_misses_the_lungs(phantom):
    heat = phantom.marker.astype(np.float32)[None]
    measures = attention_measures(heat, phantom.image[None], phantom.lungs[None], np.array([True]))
    assert measures.shares["outside_body"][0] == pytest.approx(1.0) and measures.ratios["outside_body"][0] > 2
    assert not measures.pointing_lungs[0] and measures.shares["lungs"][0] == 0


def test_body_mask_keeps_the_body_and_drops_border_and_burnt_in_marks(phantom):
    body = body_mask(phantom.image)
    assert body[64, 64] and body[phantom.lungs].all()
    assert not body[:4, :4].any() and not body[phantom.marker].any()
    letter = (phantom.image > 220) & ~phantom.marker & (np.arange(128)[:, None] < 20)
    assert letter.any() and not body[letter].any()  # the laterality letter on the border


def test_diaphragm_band_lies_just_below_each_lung():
    lungs = np.zeros((50, 50), bool)
    lungs[10:30, 5:20] = True
    lungs[10:25, 30:45] = True
    band = diaphragm_band(lungs, 4)
    assert band[30:34, 5:20].all() and band[25:29, 30:45].all()
    assert band.sum() == 4 * 15 * 2 and not (band & lungs).any()
    parts = partition(np.ones((50, 50), bool), lungs, 4)
    assert sum(p.astype(int) for p in parts.values()).max() == 1 and sum(p.sum() for p in parts.values()) == 2500


def test_fill_holes():
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[0, 0]


def test_classical_estimate_finds_phantom_lungs():
    scores = [
        dice(classical_lungs(p.image), p.lungs)
        for p in (make_phantom(np.random.default_rng(s), 0, 128) for s in range(5))
    ]
    assert np.mean(scores) > 0.75, scores


def test_lung_model_learns_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    phantoms = [make_phantom(rng, i % 2, 96) for i in range(24)]
    masks = [p.lungs.astype(np.uint8) * 255 for p in phantoms]
    model = LungModel.fit([p.image for p in phantoms[:20]], masks[:20], epochs=120, seed=0)
    scores = [dice(model.predict(p.image), p.lungs) for p in phantoms[20:]]
    assert np.mean(scores) > 0.8, scores
    model.save(tmp_path / "lungs.pt")
    again = LungModel.load(tmp_path / "lungs.pt")
    assert np.array_equal(again.predict(phantoms[21].image), model.predict(phantoms[21].image))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    from pneumocam.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="cannot read lung model"):
        LungModel.load(tmp_path / "bad.pt")


def test_an_empty_map_is_neither_a_hit_nor_a_miss():
    maps = np.zeros((3, 4, 4))
    maps[1, 0, 0] = 1.0  # inside the mask
    maps[2, 3, 3] = 1.0  # outside it
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[:, :2, :2] = True
    hits = pointing_game(maps, mask)
    assert np.isnan(hits[0]) and hits[1] == 1.0 and hits[2] == 0.0
    assert np.isnan(mass_share(maps, mask)[0])


def test_ignore_pixels_count_in_no_share_and_no_area(tmp_path):
    """A 4x4 map of ones, lungs the left half (8 px), 2 ignore pixels on the right: the lungs hold 8 of the 14
    pixels that count, not 8 of 16."""
    from pneumocam.analysis.regions import area_share, mass_share

    maps = np.ones((1, 4, 4))
    lungs = np.zeros((1, 4, 4), bool)
    lungs[0, :, :2] = True
    ignore = np.zeros((1, 4, 4), bool)
    ignore[0, 0, 2:] = True
    assert mass_share(maps, lungs, ignore)[0] == pytest.approx(8 / 14)
    assert area_share(lungs, ignore)[0] == pytest.approx(8 / 14)
    assert mass_share(maps, lungs)[0] == pytest.approx(8 / 16)  # without the ignore layer: as before


def test_mask_value_127_is_read_as_ignore(tmp_path):
    from PIL import Image

    from pneumocam.data import Sample
    from pneumocam.data.masks import load_masks_and_ignore

    raw = np.zeros((16, 16), np.uint8)
    raw[:, :8] = 255
    raw[0:4, 12:16] = 127
    (tmp_path / "train" / "NORMAL").mkdir(parents=True)
    Image.fromarray(raw).save(tmp_path / "train" / "NORMAL" / "f.png")
    sample = Sample(str(tmp_path / "f.jpeg"), 0, "train", None)
    for size, ignored in ((16, 16), (32, 64)):  # nearest resize: 16 pixels at 16 px are 64 at 32 px
        lungs, found, ignore = load_masks_and_ignore(tmp_path, [sample], size)
        assert found[0] and int(ignore.sum()) == ignored, size
        assert not (lungs & ignore).any() and ignore[0, 0, -1] and not ignore[0, -1, -1]
    assert int(load_masks_and_ignore(tmp_path, [sample], 16)[0].sum()) == 128  # the lungs read as before


def test_ignore_pixels_are_left_out_of_a_share_inside_and_outside_the_mask():
    """Map [[1, 2], [3, 4]], mask the left column, 'ignore' at (1, 0) inside it and (0, 1) outside it: the share is
    1 / (1 + 4) = 0.2 by hand (with the ignore pixels counted: 4 / 10)."""
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    mask = np.array([[[True, False], [True, False]]])
    ignore = np.array([[[False, True], [True, False]]])
    assert mass_share(maps, mask, ignore)[0] == pytest.approx(0.2)
    assert mass_share(maps, mask)[0] == pytest.approx(0.4)
    assert area_share(mask, ignore)[0] == pytest.approx(1 / 2)  # one lung pixel of the two kept


def test_per_class_region_means_keep_the_classes_apart(phantom_data):
    """NORMAL maps all in a corner (outside the body), PNEUMONIA maps in the centre: each class's mean share equals
    the mean of its own films' column, and the two differ (a swap of the classes would show); likewise the pointing
    game's rate per class, counted by hand."""
    from pneumocam.data import discover, load_images

    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    labels = loaded.labels
    maps = np.zeros((len(labels), 7, 7), np.float32)
    maps[labels == 0, 0, 0] = 1.0
    maps[labels == 1, 3, 3] = 1.0
    columns, summary, _ = split_attention(loaded, maps, 64, labels, str(phantom_data.lung_masks))
    means = summary["mean_share_by_class"]
    for c, name in enumerate(("NORMAL", "PNEUMONIA")):
        assert means[name]["outside_body"] == pytest.approx(np.nanmean(columns["share_outside_body"][labels == c]))
    assert means["NORMAL"]["outside_body"] - means["PNEUMONIA"]["outside_body"] > 0.3
    # Pointing: NORMAL peaks in the corner (never the lungs), PNEUMONIA over the left lung (always, at cell (3, 2))
    maps[labels == 1] = 0.0
    maps[labels == 1, 3, 2] = 1.0
    columns, summary, _ = split_attention(loaded, maps, 64, labels, str(phantom_data.lung_masks))
    assert summary["pointing_lungs_by_class"] == {"NORMAL": 0.0, "PNEUMONIA": 1.0}


def test_mask_measures_by_hand_with_a_missing_mask_and_an_ignore_pixel(tmp_path):
    """Three 16x16 films: a's mask the left half (128 px) with four 127 pixels in its top-right corner, b without a
    mask file, c's mask empty (all 0). a's map: ones, 3 at (15, 15). b and c have no usable mask (NaN share and
    hit, not found); c's area 0."""
    from PIL import Image

    from pneumocam.analysis.regions import ground_truth_summary, mask_measures
    from pneumocam.data import Sample

    folder = tmp_path / "train" / "NORMAL"
    folder.mkdir(parents=True)
    raw = np.zeros((16, 16), np.uint8)
    raw[:, :8] = 255
    raw[0:2, 14:16] = 127
    Image.fromarray(raw).save(folder / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "c.png")
    samples = [Sample(str(tmp_path / n), 0, "train", None) for n in ("a.png", "b.png", "c.png")]
    maps = np.ones((3, 16, 16), np.float32)
    maps[0, 15, 15] = 3.0
    share, hit, found, area = mask_measures(tmp_path, samples, maps, 16, chunk=2)  # two chunks
    # a: the lungs hold 128 pixels of mass 1; outside them 123 counted pixels of 1 and one of 3 (4 ignored)
    assert share[0] == pytest.approx(128 / (128 + 123 + 3))
    assert hit[0] == 0.0  # the map's peak (15, 15) lies outside the lungs
    assert area[0] == pytest.approx(128 / 252)
    assert list(found) == [True, False, False]
    assert np.isnan(share[1:]).all() and np.isnan(hit[1:]).all() and area[2] == 0.0
    summary = ground_truth_summary(share, hit, found, area)
    assert summary == {
        "images_with_mask": 1,
        "mean_mass_share": pytest.approx(128 / 254),
        "mean_area_share": pytest.approx(128 / 252),
        "pointing_game_hit_rate": 0.0,
    }


def test_ground_truth_summary_averages_only_the_films_with_a_mask():
    from pneumocam.analysis.regions import ground_truth_summary

    share, hit = np.array([0.5, np.nan, 0.2, 0.9]), np.array([1.0, np.nan, 0.0, 1.0])
    found, area = np.array([True, False, True, False]), np.array([0.3, 0.0, 0.5, 0.7])
    assert ground_truth_summary(share, hit, found, area) == {
        "images_with_mask": 2,
        "mean_mass_share": pytest.approx(0.35),
        "mean_area_share": pytest.approx(0.4),
        "pointing_game_hit_rate": pytest.approx(0.5),
    }
    none = ground_truth_summary(share, hit, np.zeros(4, bool), area)
    assert none == dict.fromkeys(
        ("images_with_mask", "mean_mass_share", "mean_area_share", "pointing_game_hit_rate"), None
    ) | {"images_with_mask": 0}


def test_attention_measures_by_hand_for_a_reference_mask_a_learned_and_a_classical_lung_estimate():
    """50 px films, the body a given square (5-45), lungs two boxes (rows 10-24, columns 10-20 and 30-40). Film 0's
    lungs come from its mask, with an 'ignore' pixel at (0, 0) holding the map's maximum: left out of every share,
    area and the pointing game. Film 1 has no mask: a learned estimator's lungs, and its ignore layer does not apply.
    Film 2: the classical estimate on the given body. The diaphragm band is round(0.06 * 50) = 3 rows under each
    lung; each region's share and area are summed by hand from boxes drawn here."""
    from pneumocam.analysis.regions import attention_measures
    from pneumocam.anatomy.lungs import classical_lungs
    from pneumocam.core.schema import REGIONS

    side = 50
    body = np.zeros((side, side), bool)
    body[5:46, 5:46] = True
    lungs = np.zeros((side, side), bool)
    lungs[10:25, 10:21] = lungs[10:25, 30:41] = True
    band = np.zeros((side, side), bool)
    band[25:28, 10:21] = band[25:28, 30:41] = True
    regions = {"lungs": lungs, "diaphragm": band, "body_other": body & ~lungs & ~band, "outside_body": ~body}
    ignore = np.zeros((3, side, side), bool)
    ignore[:, 0, 0] = True
    film_map = np.ones((side, side))
    film_map[12, 12], film_map[26, 15], film_map[0, 0] = 5.0, 3.0, 9.0
    maps = np.stack([film_map] * 3)
    rng = np.random.default_rng(0)
    grays = rng.integers(60, 200, (3, side, side)).astype(np.uint8)  # body_mask of noise is not the given body

    class Estimator:
        def predict(self, gray):
            assert gray.shape == (side, side)
            return lungs

    found = attention_measures(
        maps, grays, np.stack([lungs, np.zeros_like(lungs), np.zeros_like(lungs)]), np.array([True, False, False]),
        estimator=None, bodies=np.stack([body] * 3), ignore=ignore,
    )  # fmt: skip
    learned = attention_measures(
        maps[1:2], grays[1:2], np.zeros((1, side, side), bool), np.array([False]), estimator=Estimator(),
        bodies=body[None], ignore=ignore[1:2],
    )  # fmt: skip

    def by_hand(regions, ignored):
        kept = ~ignore[0] if ignored else np.ones((side, side), bool)
        mass = film_map * kept
        shares = {r: mass[m].sum() / mass.sum() for r, m in regions.items()}
        areas = {r: (m & kept).sum() / kept.sum() for r, m in regions.items()}
        return shares, areas

    shares, areas = by_hand(regions, ignored=True)
    assert found.lung_source[0] == "mask" and found.pointing_lungs[0] == 1.0  # the peak (0, 0) is ignored
    for r in REGIONS:
        assert found.shares[r][0] == pytest.approx(shares[r]), r
        assert found.areas[r][0] == pytest.approx(areas[r]), r
        assert found.ratios[r][0] == pytest.approx(shares[r] / areas[r]), r
    shares, areas = by_hand(regions, ignored=False)
    assert learned.lung_source == ["estimated (learned model)"] and learned.pointing_lungs[0] == 0.0  # peak outside
    for r in REGIONS:
        assert learned.shares[r][0] == pytest.approx(shares[r]), r
        assert learned.areas[r][0] == pytest.approx(areas[r]), r
    classical = classical_lungs(grays[2], body=body)
    assert found.lung_source[2] == "estimated (classical)"
    assert found.areas["lungs"][2] == pytest.approx(classical.mean())
    assert found.columns()["share_lungs"][0] == found.shares["lungs"][0]
    assert set(found.columns()) == {f"{k}_{r}" for k in ("share", "ratio", "area") for r in REGIONS} | {
        "pointing_lungs"
    }


def test_split_attention_in_chunks_equals_one_pass_and_its_summary_by_class(phantom_data):
    """Chunks of 3 films over the split's 16 (the last holds one) give the columns of one attention_measures pass
    over the whole split with the same masks and ignore layers; each class's means, the pointing rate and the lung
    sources are counted here from those columns."""
    from pneumocam.analysis.regions import attention_measures
    from pneumocam.data import discover, load_images
    from pneumocam.data.masks import load_masks_and_ignore
    from pneumocam.explain.cam import upsample

    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    labels = loaded.labels
    assert set(labels.tolist()) == {0, 1} and len(labels) == 16
    maps = np.random.default_rng(2).random((len(labels), 7, 7)).astype(np.float32)
    columns, summary, sources = split_attention(loaded, maps, 64, labels, str(phantom_data.lung_masks), chunk=3)
    masks, found, ignore = load_masks_and_ignore(phantom_data.lung_masks, loaded.samples, 64)
    whole = attention_measures(upsample(maps, 64), np.asarray(loaded.images), masks, found, ignore=ignore)
    for name, values in whole.columns().items():
        np.testing.assert_allclose(columns[name], values, err_msg=name)
    assert sources == whole.lung_source and len(sources) == len(labels)
    for prefix, key in (
        ("share", "mean_share_by_class"),
        ("ratio", "mean_ratio_by_class"),
        ("area", "mean_area_by_class"),
    ):
        for c, name in enumerate(("NORMAL", "PNEUMONIA")):
            for r in ("lungs", "diaphragm", "body_other", "outside_body"):
                expected = np.nanmean(columns[f"{prefix}_{r}"][labels == c])
                assert summary[key][name][r] == pytest.approx(expected), (key, name, r)
    for c, name in enumerate(("NORMAL", "PNEUMONIA")):
        assert summary["pointing_lungs_by_class"][name] == pytest.approx(
            np.nanmean(columns["pointing_lungs"][labels == c])
        )
    assert (
        summary["lung_sources"] == {s: sources.count(s) for s in set(sources)}
        and sum(summary["lung_sources"].values()) == 16
    )
    assert summary["estimated"] == any(s != "mask" for s in sources)
    _, unmasked, unmasked_sources = split_attention(loaded, maps, 64, labels, None, chunk=5)
    assert unmasked_sources == ["estimated (classical)"] * 16
    assert unmasked["lung_sources"] == {"estimated (classical)": 16} and unmasked["estimated"] is True


def test_shares_of_a_faint_map_and_of_nearly_or_wholly_ignored_masks_by_hand():
    """A map whose whole mass is 0.3 still has a share (0.1 / 0.3); one pixel left after the ignore layer gives an
    area share of 1 or 0; every pixel ignored gives area 0, not NaN."""
    maps = np.zeros((1, 2, 2))
    maps[0, 0, 0], maps[0, 1, 1] = 0.1, 0.2
    mask = np.array([[[True, False], [False, False]]])
    assert mass_share(maps, mask)[0] == pytest.approx(1 / 3)
    one_left = np.array([[[False, True], [True, True]]])  # only (0, 0) counts
    assert area_share(mask, one_left)[0] == 1.0
    assert area_share(~mask, one_left)[0] == 0.0
    assert area_share(mask, np.ones((1, 2, 2), bool))[0] == 0.0


def test_a_lung_touching_the_bottom_edge_has_no_diaphragm_band_under_it():
    """The band lies under each lung component; the background (label 0) is not a lung. Column 1's lung reaches
    the last row, so nothing lies below it; column 3's lung ends at row 2, so rows 3-4 below it form the band."""
    lungs = np.zeros((6, 5), dtype=bool)
    lungs[3:6, 1] = True
    lungs[0:3, 3] = True
    expected = np.zeros((6, 5), dtype=bool)
    expected[3:5, 3] = True
    np.testing.assert_array_equal(diaphragm_band(lungs, 2), expected)


def test_a_small_map_gets_a_one_pixel_diaphragm_band():
    """At 8 px the band is max(1, round(0.06 * 8)) = 1 pixel tall: a lung block over rows 2-4 of columns 2-5 has
    a band of the 4 pixels of row 5 below it (4 / 64 of the area)."""
    lungs = np.zeros((1, 8, 8), dtype=bool)
    lungs[0, 2:5, 2:6] = True
    gray = np.full((1, 8, 8), 128, np.uint8)
    measures = attention_measures(np.ones((1, 8, 8)), gray, lungs, np.array([True]), bodies=np.ones((1, 8, 8), bool))
    assert measures.areas["diaphragm"][0] == pytest.approx(4 / 64)
    assert measures.areas["lungs"][0] == pytest.approx(12 / 64)


def test_estimated_lungs_lie_inside_the_body_the_caller_gives(phantom):
    """Without a lung mask the classical estimate reads the body mask passed in: an empty body leaves no lungs
    (the film's own body mask would give some: checked)."""
    gray = phantom.image[None]
    assert classical_lungs(phantom.image).any()  # the fixture's own body holds lungs
    measures = attention_measures(
        np.ones((1, 128, 128)), gray, np.zeros((1, 128, 128), bool), np.array([False]), bodies=np.zeros_like(gray, bool)
    )
    assert measures.areas["lungs"][0] == 0.0 and measures.lung_source == ["estimated (classical)"]


def test_mask_measures_in_chunks_of_one_and_two_equal_one_pass_with_an_empty_mask_among_them(tmp_path):
    """Five films, 16 px masks over the left 2 (k + 1) columns (k = 0, 1, 3, 4) and one empty: chunks of 1 and 2
    give the one-pass answers, and the empty mask is not found while the others in its chunk are."""
    from PIL import Image

    from pneumocam.analysis.regions import mask_measures
    from pneumocam.data import Sample

    folder = tmp_path / "train" / "NORMAL"
    folder.mkdir(parents=True)
    for k in range(5):
        raw = np.zeros((16, 16), np.uint8)
        if k != 2:
            raw[:, : 2 * (k + 1)] = 255
        Image.fromarray(raw).save(folder / f"f{k}.png")
    samples = [Sample(str(tmp_path / f"f{k}.png"), 0, "train", None) for k in range(5)]
    maps = np.ones((5, 16, 16), np.float32)
    share, hit, found, area = mask_measures(tmp_path, samples, maps, 16, chunk=8)
    assert list(found) == [True, True, False, True, True]
    np.testing.assert_allclose(share[[0, 1, 3, 4]], [1 / 8, 2 / 8, 4 / 8, 5 / 8])
    for chunk in (1, 2):
        again = mask_measures(tmp_path, samples, maps, 16, chunk=chunk)
        for ours, theirs in zip(again, (share, hit, found, area), strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_split_attention_leaves_the_lung_masks_ignore_pixels_out(phantom_data, tmp_path):
    """The phantom lung masks with a 127 block painted over each film's left lung: the columns equal one
    attention_measures pass given that ignore layer, and differ from a pass without it (checked), so the layer
    reaches the measures."""
    import shutil

    from PIL import Image

    from pneumocam.data import discover, load_images
    from pneumocam.data.masks import load_masks_and_ignore
    from pneumocam.explain.cam import upsample

    masks_root = tmp_path / "lungs"
    shutil.copytree(phantom_data.lung_masks, masks_root)
    for path in masks_root.rglob("*.png"):
        raw = np.asarray(Image.open(path)).copy()
        raw[20:40, 10:30] = 127
        Image.fromarray(raw).save(path)
    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    maps = np.random.default_rng(5).random((len(loaded.labels), 7, 7)).astype(np.float32)
    columns, _, _ = split_attention(loaded, maps, 64, loaded.labels, str(masks_root), chunk=3)
    masks, found, ignore = load_masks_and_ignore(masks_root, loaded.samples, 64)
    assert found.all() and ignore.any(axis=(1, 2)).all()
    up, grays = upsample(maps, 64), np.asarray(loaded.images)
    with_ignore = attention_measures(up, grays, masks, found, ignore=ignore).columns()
    without = attention_measures(up, grays, masks, found).columns()
    assert not np.allclose(with_ignore["share_lungs"], without["share_lungs"])
    for name, values in with_ignore.items():
        np.testing.assert_allclose(columns[name], values, err_msg=name)


def test_split_attention_reads_lungs_from_a_lung_model_file_where_no_mask_is_given(phantom_data, tmp_path):
    """A lung model (one epoch: what it predicts does not matter here) saved and named: every film's lungs come
    from it, the columns equal attention_measures with that model as the estimator."""
    from pneumocam.data import discover, load_images
    from pneumocam.explain.cam import upsample

    rng = np.random.default_rng(0)
    phantoms = [make_phantom(rng, i % 2, 64) for i in range(4)]
    model = LungModel.fit([p.image for p in phantoms], [p.lungs.astype(np.uint8) * 255 for p in phantoms], epochs=1)
    model.save(tmp_path / "lungs.pt")
    loaded = load_images(discover(phantom_data.images).split("test"), 64, use_cache=False)
    maps = np.random.default_rng(6).random((len(loaded.labels), 7, 7)).astype(np.float32)
    columns, summary, sources = split_attention(loaded, maps, 64, loaded.labels, lung_model=str(tmp_path / "lungs.pt"))
    assert sources == ["estimated (learned model)"] * len(loaded.labels)
    n = len(loaded.labels)
    expected = attention_measures(
        upsample(maps, 64), np.asarray(loaded.images), np.zeros((n, 64, 64), bool), np.zeros(n, bool), model
    ).columns()
    for name, values in expected.items():
        np.testing.assert_allclose(columns[name], values, err_msg=name)
