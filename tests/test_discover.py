"""Dataset discovery, manifests, splits, sampling and the image cache, on folders the tests build."""

import os

import numpy as np
import pytest
from PIL import Image

from pneumocam.core.errors import DataError
from pneumocam.data import balanced_indices, choose_validation, discover, fingerprint, load_images, patient_id_from_name


def write_images(folder, names, value=100, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("L", (size, size), value).save(folder / name)


def kermany_like(root, n=6, splits=("train", "test")):
    for split in splits:
        write_images(root / split / "NORMAL", [f"IM-{i:04d}-0001.png" for i in range(n)], 60)
        write_images(root / split / "PNEUMONIA", [f"person{i}_bacteria_{i}.png" for i in range(n)], 160)
    return root


@pytest.mark.parametrize(
    "name, expected",
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("person1_virus_12_2.jpeg", "person1"),
        ("IM-0115-0001.jpeg", "im-0115"),
        ("IM-0660-0001-0001.jpeg", "im-0660"),
        ("NORMAL2-IM-1427-0001.jpeg", "normal2-im-1427"),
        ("phantom-00012-1.png", "phantom-00012"),
        ("scan_2024.png", None),
    ],
)
def test_patient_id_from_kermany_names(name, expected):
    assert patient_id_from_name(name) == expected


def test_discovery_is_case_insensitive_and_counts_ignored_files(tmp_path):
    root = tmp_path / "data"
    write_images(root / "Train" / "normal", ["IM-0001-0001.png", "IM-0002-0001.png"])
    write_images(root / "Train" / "Pneumonia", ["person1_virus_1.png"])
    write_images(root / "Train" / "Pneumonia" / "nested", ["person2_virus_2.png"])
    (root / "Train" / "normal" / ".DS_Store").write_bytes(b"x")
    (root / "Train" / "normal" / "Thumbs.db").write_bytes(b"x")
    (root / "Train" / "normal" / "readme.txt").write_text("notes")
    (root / "Train" / "COVID").mkdir()
    index = discover(root)
    assert index.counts() == {"train": {"NORMAL": 2, "PNEUMONIA": 2}}
    assert (index.ignored_hidden, index.ignored_non_image) == (2, 1)
    assert any(f.endswith("COVID") for f in index.unknown_folders)


def test_missing_root_names_the_folder(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found: .*nowhere"):
        discover(tmp_path / "nowhere")


def test_root_without_splits_explains_the_layout(tmp_path):
    write_images(tmp_path / "NORMAL", ["a.png"])
    write_images(tmp_path / "PNEUMONIA", ["b.png"])
    with pytest.raises(DataError, match="put them in a split folder"):
        discover(tmp_path)


def test_empty_class_is_one_clear_error(tmp_path):
    root = kermany_like(tmp_path / "d", splits=("train",))
    for f in (root / "train" / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"train/NORMAL holds no images"):
        discover(root)


def test_missing_class_folder_is_one_clear_error(tmp_path):
    write_images(tmp_path / "train" / "NORMAL", ["IM-0001-0001.png"])
    with pytest.raises(DataError, match="has no PNEUMONIA folder"):
        discover(tmp_path)


def test_asking_for_a_missing_split_suggests_val(tmp_path):
    index = discover(kermany_like(tmp_path / "d", splits=("train", "val")))
    with pytest.raises(DataError, match="no 'test' split.*--eval-split val"):
        index.split("test")


def test_a_root_holding_only_test_works(tmp_path):
    index = discover(kermany_like(tmp_path / "d", splits=("test",)))
    assert index.splits == ["test"] and len(index.split("test")) == 12


def test_manifest_with_relative_paths(tmp_path):
    write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png", "d.png"])
    (tmp_path / "m.csv").write_text(
        "path,label,patient_id,split\nimgs/a.png,NORMAL,p1,train\nimgs/b.png,pneumonia,p2,train\n"
        "imgs/c.png,0,p3,test\nimgs/d.png,1,p4,test\n"
    )
    index = discover(tmp_path / "m.csv")
    assert index.source == "manifest" and index.counts() == {
        "train": {"NORMAL": 1, "PNEUMONIA": 1},
        "test": {"NORMAL": 1, "PNEUMONIA": 1},
    }
    assert os.path.isfile(index.samples[0].path) and index.samples[0].patient_id == "p1"


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,label\na.png,NORMAL\n", "needs columns 'path' and 'label'"),
        ("path,label\na.png,COVID\n", "line 2: label 'COVID'"),
        ("path,label\n", "has no rows"),
        ("path,label\na.png,NORMAL\n", "has no PNEUMONIA images"),
    ],
)
def test_bad_manifests_are_clear_errors(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        discover(tmp_path / "m.csv")


def test_small_dataset_val_is_replaced_by_a_carved_split(tmp_path):
    root = tmp_path / "d"
    for i in range(40):
        write_images(root / "train" / "NORMAL", [f"IM-{i:04d}-0001.png", f"IM-{i:04d}-0002.png"])
        write_images(
            root / "train" / "PNEUMONIA", [f"person{i}_virus_{2 * i}.png", f"person{i}_bacteria_{2 * i + 1}.png"]
        )
    write_images(root / "val" / "NORMAL", ["IM-9000-0001.png"])
    write_images(root / "val" / "PNEUMONIA", ["person9000_virus_1.png"])
    index = discover(root)
    train, val, plan = choose_validation(index, seed=1)
    assert plan.source == "carved" and plan.shared_patients == 0
    assert {s.patient_id for s in train}.isdisjoint({s.patient_id for s in val})
    assert 0 < len(val) < len(train)
    _, val_dataset, plan_dataset = choose_validation(index, source="dataset")
    assert plan_dataset.source == "dataset" and len(val_dataset) == 2


def test_files_without_patient_ids_fall_back_to_file_level_and_say_so(tmp_path):
    root = tmp_path / "d"
    write_images(root / "train" / "NORMAL", [f"n{i}.png" for i in range(10)])
    write_images(root / "train" / "PNEUMONIA", [f"p{i}.png" for i in range(10)])
    _, _, plan = choose_validation(discover(root), fraction=0.2, seed=0)
    assert plan.grouping.startswith("file for 20 of 20")


def test_balanced_indices_are_deterministic_and_balanced():
    labels = np.array([0] * 50 + [1] * 200)
    a = balanced_indices(labels, 30, seed=5)
    assert np.array_equal(a, balanced_indices(labels, 30, seed=5))
    assert not np.array_equal(a, balanced_indices(labels, 30, seed=6))
    assert np.bincount(labels[a]).tolist() == [30, 30] and len(set(a)) == 60
    with pytest.raises(DataError, match="fewer than the 60"):
        balanced_indices(labels, 60, seed=0)


def test_cache_reuses_and_invalidates(tmp_path):
    root = kermany_like(tmp_path / "d", n=3, splits=("test",))
    (root / "test" / "NORMAL" / "IM-0100-0001.png").write_bytes(b"")  # unreadable: skipped with reason
    samples = discover(root).split("test")
    cache = tmp_path / "cache"
    first = load_images(samples, 16, cache_dir=cache)
    assert not first.from_cache and first.images.shape == (6, 16, 16)
    assert [(os.path.basename(s.path), s.reason) for s in first.skipped] == [
        ("IM-0100-0001.png", "empty file (0 bytes)")
    ]
    second = load_images(samples, 16, cache_dir=cache)
    assert second.from_cache and np.array_equal(second.images, first.images)
    assert second.paths == first.paths and second.skipped == first.skipped
    # Changing a file changes the key: the entry is rebuilt with the new content.
    target = samples[-1].path
    Image.new("L", (32, 32), 7).save(target)
    os.utime(target, ns=(1, 1))
    third = load_images(samples, 16, cache_dir=cache)
    assert not third.from_cache and third.images[-1].max() == 7
    assert fingerprint(samples) == fingerprint(list(reversed(samples)))


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.2, 0.3, 0.4])
def test_carved_share_matches_the_request_within_one_patient(fraction):
    """Hand count: 60 NORMAL patients with 1-3 films and 90 PNEUMONIA patients with 1-4 films (cycled sizes)."""
    from pneumocam.data import Sample, carve_validation

    samples, largest = [], 4
    for label, n_patients, sizes in ((0, 60, (1, 2, 3)), (1, 90, (1, 2, 3, 4))):
        for p in range(n_patients):
            for k in range(sizes[p % len(sizes)]):
                samples.append(Sample(f"/d/{label}/pat{label}-{p}-{k}.png", label, "train", f"pat{label}-{p}"))
    n_normal = 20 * (1 + 2 + 3)  # 120 films
    n_pneumonia = 22 * (1 + 2 + 3 + 4) + (1 + 2)  # 90 patients: 22 full cycles and two more: 223 films
    assert sum(s.label == 0 for s in samples) == n_normal and sum(s.label == 1 for s in samples) == n_pneumonia
    train, val, _ = carve_validation(samples, fraction, seed=0)
    assert len(train) + len(val) == len(samples)
    assert abs(len(val) - fraction * len(samples)) <= largest
    for label, total in ((0, n_normal), (1, n_pneumonia)):
        in_val = sum(s.label == label for s in val)
        assert abs(in_val - fraction * total) <= largest / 2, (label, in_val, fraction * total)
    assert not {s.patient_id for s in train} & {s.patient_id for s in val}
