"""Synthetic phantoms: plausible anatomy, ground-truth masks aligned with content, determinism."""

import numpy as np

from pneumocam.data import discover, read_grayscale
from pneumocam.data.phantoms import make_phantom, write_phantom_dataset


def test_lesion_pixels_are_brighter_than_the_surrounding_lung():
    for seed in range(10):
        p = make_phantom(np.random.default_rng(seed), 1, 128)
        assert p.lesion.any() and np.all(p.lungs[p.lesion])
        assert p.image[p.lesion].mean() > p.image[p.lungs & ~p.lesion].mean() + 20


def test_normal_phantoms_have_no_lesion():
    p = make_phantom(np.random.default_rng(0), 0, 128)
    assert not p.lesion.any() and p.lungs.any()


def test_masks_are_aligned_with_the_anatomy():
    p = make_phantom(np.random.default_rng(1), 0, 128)
    lung, rest = p.image[p.lungs].mean(), p.image[~p.lungs].mean()
    border = p.image[:, :4].mean()
    assert lung < p.image[64:, 48:80].mean()  # air-filled lungs darker than the abdomen and mediastinum
    assert border < lung  # the blank border is darker still
    # Two lungs, one on each side of the midline.
    cols = np.flatnonzero(p.lungs.any(axis=0))
    assert cols.min() < 64 < cols.max() and not p.lungs[:, 62:66].any()
    assert rest > 0


def test_shortcut_marker_is_a_bright_corner_square():
    p = make_phantom(np.random.default_rng(2), 1, 128, marker=True)
    assert p.marker.any() and p.image[p.marker].min() > 200
    ys, xs = np.nonzero(p.marker)
    assert xs.max() < 16 and ys.max() < 16


def test_inside_marker_is_on_the_body_below_the_lungs_and_changes_nothing_else():
    """Hand-checked geometry: the square is centred on the midline, below every lung pixel, inside the body (brighter
    than the border); the same seed without a marker gives the same film elsewhere (the marker draws no random)."""
    for seed in range(6):
        marked = make_phantom(np.random.default_rng(seed), seed % 2, 128, marker=True, place="inside")
        plain = make_phantom(np.random.default_rng(seed), seed % 2, 128)
        ys, xs = np.nonzero(marked.marker)
        assert len(ys) >= 60 and ys.min() > np.flatnonzero(marked.lungs.any(axis=1)).max()
        assert abs(xs.mean() - 64) < 6 and ys.min() >= 0.78 * 128 and ys.max() <= 0.88 * 128
        assert np.array_equal(marked.image[~marked.marker], plain.image[~marked.marker])
        assert plain.image[marked.marker].min() > 100  # what it covers is body, not the dark border


def test_same_seed_same_dataset(tmp_path):
    a = write_phantom_dataset(tmp_path / "a", {"train": 3}, size=48, seed=9)
    b = write_phantom_dataset(tmp_path / "b", {"train": 3}, size=48, seed=9)
    c = write_phantom_dataset(tmp_path / "c", {"train": 3}, size=48, seed=10)
    files = sorted(p.relative_to(a.images) for p in a.images.rglob("*.png"))
    assert len(files) == 6
    same = [np.array_equal(read_grayscale(a.images / f), read_grayscale(b.images / f)) for f in files]
    differ = [np.array_equal(read_grayscale(a.images / f), read_grayscale(c.images / f)) for f in files]
    assert all(same) and not all(differ)


def test_written_dataset_is_discoverable_with_masks_beside_it(phantom_data):
    index = discover(phantom_data.images)
    assert index.counts() == {s: {"NORMAL": n, "PNEUMONIA": n} for s, n in (("train", 24), ("val", 6), ("test", 8))}
    for sample in index.samples[:10]:
        rel = sample.path[len(str(phantom_data.images)) + 1 :]
        lung = read_grayscale(phantom_data.lung_masks / rel)
        lesion = read_grayscale(phantom_data.lesion_masks / rel)
        assert set(np.unique(lung)) <= {0, 255} and lung.any()
        assert (lesion.any()) == (sample.label == 1)
        assert np.all(lung[lesion > 0] == 255)
    assert all(s.patient_id and s.patient_id.startswith("phantom-") for s in index.samples)


def test_shortcut_option_follows_the_label(tmp_path):
    data = write_phantom_dataset(tmp_path / "s", {"train": 40}, size=48, seed=1, shortcut=0.95)
    with_marker = {
        name: sum(read_grayscale(p).any() for p in (data.marker_masks / "train" / name).glob("*.png"))
        for name in ("NORMAL", "PNEUMONIA")
    }
    assert with_marker["PNEUMONIA"] >= 34 and with_marker["NORMAL"] <= 6
