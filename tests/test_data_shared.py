"""The data layer on the real Kermany images in ../shared/data (read in place, never written)."""

from pathlib import Path

import numpy as np
import pytest

from pneumocam.data import choose_validation, discover, load_images, read_grayscale

from .conftest import FULLRES, KERMANY, LUNG_MASKS

pytestmark = pytest.mark.shared_data


def test_discovery_counts_match_the_dataset_readme():
    index = discover(KERMANY)
    assert index.counts() == {"train": {"NORMAL": 1341, "PNEUMONIA": 3875}, "val": {"NORMAL": 8, "PNEUMONIA": 8}}
    assert index.unknown_folders == []


def test_every_train_name_carries_a_patient_id():
    index = discover(KERMANY)
    assert all(s.patient_id for s in index.samples)


def test_carved_validation_shares_no_patient_and_is_stratified():
    index = discover(KERMANY)
    train, val, plan = choose_validation(index, seed=7)
    assert plan.source == "carved" and "16 images" in plan.reason  # Kermany's own val is too small
    assert plan.grouping == "patient"
    assert {s.patient_id for s in train}.isdisjoint({s.patient_id for s in val})
    assert plan.shared_patients == 0
    assert len(train) + len(val) == 5216
    # The carved share matches the requested 20% within one patient's films, and the plan records it.
    films = {}
    for sample in index.split("train"):
        films[sample.patient_id] = films.get(sample.patient_id, 0) + 1
    assert abs(len(val) - 0.2 * 5216) <= max(films.values())
    assert plan.actual_fraction == len(val) / 5216

    def share(part):
        return np.mean([s.label for s in part])

    assert abs(share(val) - share(train)) < 0.03
    # Deterministic by seed; another seed gives another split.
    assert [s.path for s in choose_validation(index, seed=7)[1]] == [s.path for s in val]
    assert [s.path for s in choose_validation(index, seed=8)[1]] != [s.path for s in val]


def test_each_lung_mask_matches_an_image_by_name():
    masks = sorted(LUNG_MASKS.glob("*/*/*.png"))
    assert len(masks) == 4656
    for mask in masks:
        split, cls = mask.parent.parent.name, mask.parent.name
        assert (KERMANY / split / cls / f"{mask.stem}.jpeg").is_file(), mask
    sample = read_grayscale(masks[0])
    assert sample.shape == (224, 224) and set(np.unique(sample)) <= {0, 127, 255}


def test_full_resolution_sample_reads_and_resizes():
    files = sorted(FULLRES.glob("train/*/*.jpeg"))
    assert len(files) == 24
    sizes = []
    for path in files:
        gray = read_grayscale(path)
        assert gray.dtype == np.uint8 and gray.ndim == 2
        sizes.append(max(gray.shape))
    assert max(sizes) > 1000
    index = discover(FULLRES)
    loaded = load_images(index.split("train"), 224, use_cache=False)
    assert loaded.images.shape == (24, 224, 224) and not loaded.skipped
    # The squashed 224 px copy in kermany224 is the same film: the two agree closely.
    small = read_grayscale(KERMANY / "train" / "NORMAL" / Path(loaded.paths[0]).name)
    assert np.corrcoef(small.ravel().astype(float), loaded.images[0].ravel().astype(float))[0, 1] > 0.95


def test_heldout_validation_and_train_are_patient_disjoint():
    from pneumocam.data import split_holdout

    index = discover(KERMANY)
    rest, held_out = split_holdout(index, 0.15, seed=0)
    train, val, plan = choose_validation(index, seed=0, holdout_fraction=0.15)
    groups = [{s.patient_id for s in part} for part in (train, val, held_out)]
    assert all(a.isdisjoint(b) for i, a in enumerate(groups) for b in groups[i + 1 :])
    assert len(train) + len(val) + len(held_out) == 5216 and 0.12 < len(held_out) / 5216 < 0.18


def test_classical_lung_estimate_on_the_reference_masks():
    from pneumocam.anatomy.lungs import classical_lungs, dice

    scores = []
    for mask_file in sorted((LUNG_MASKS / "val").glob("*/*.png")):
        reference = read_grayscale(mask_file)
        film = read_grayscale(KERMANY / "val" / mask_file.parent.name / f"{mask_file.stem}.jpeg")
        scores.append(dice(classical_lungs(film), reference == 255, reference == 127))
    assert len(scores) == 16 and np.mean(scores) > 0.8, scores


def test_body_mask_contains_the_reference_lungs_on_real_films():
    from pneumocam.anatomy.lungs import body_mask

    inside = []
    for mask_file in sorted((LUNG_MASKS / "val").glob("*/*.png")):
        lungs = read_grayscale(mask_file) == 255
        body = body_mask(read_grayscale(KERMANY / "val" / mask_file.parent.name / f"{mask_file.stem}.jpeg"))
        inside.append((body & lungs).sum() / lungs.sum())
        assert 0.3 < body.mean() < 0.99  # a body, with a border outside it
    assert np.mean(inside) > 0.97, inside
