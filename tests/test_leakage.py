"""Checkpoints remember what they saw; evaluate, explain and predict count any overlap, by content and patient."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from pneumocam.cli.app import app
from pneumocam.data import Sample, discover
from pneumocam.evaluation.leakage import check_leakage, file_sha1, seen_record
from pneumocam.model.network import load_checkpoint

runner = CliRunner()


@pytest.fixture
def trained(tiny_checkpoint):
    return tiny_checkpoint


def test_checkpoint_records_content_hashes_and_patients_of_train_and_val(trained, phantom_data):
    import hashlib

    _, meta = load_checkpoint(trained / "model.pt")
    index = discover(phantom_data.images)
    for part, split in (("training", "train"), ("selection", "val")):
        files = sorted(s.path for s in index.split(split))
        expected = sorted({hashlib.sha1(open(f, "rb").read()).hexdigest() for f in files})
        assert meta["seen"][part]["sha1"] == expected and meta["seen"][part]["n_images"] == len(files)
        assert meta["seen"][part]["patients"] == sorted({s.patient_id for s in index.split(split)})


def test_hand_counted_overlap(tmp_path):
    files = []
    for i in range(5):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(bytes([i]) * 10)
        files.append(path)
    train = [Sample(str(files[i]), 0, "train", f"p{i}") for i in (0, 1, 2)]
    val = [Sample(str(files[3]), 1, "val", "p3")]
    meta = {"seen": {"training": seen_record(train), "selection": seen_record(val)}}
    copy = tmp_path / "renamed copy of f1.bin"
    shutil.copy(files[1], copy)
    evaluated = [
        Sample(str(copy), 0, "test", None),  # a training film under another name: caught by content
        Sample(str(files[3]), 1, "test", "p3"),  # a selection film, and its patient
        Sample(str(files[4]), 0, "test", "p0"),  # a new film of a training patient
        Sample(str(files[4]), 0, "test", "p9"),
    ]  # clean (same bytes as the one above, but not seen)
    leak = check_leakage(meta, evaluated)
    assert (leak.n_images_seen_in_training, leak.n_images_seen_in_selection) == (1, 1)
    assert (leak.n_patients_shared_with_training, leak.n_patients_shared_with_selection) == (1, 1)
    assert leak.found and len(leak.rows) == 3 and str(copy) in leak.examples
    assert not check_leakage(meta, evaluated[3:]).found
    assert not check_leakage({}, evaluated).recorded


def test_evaluate_reports_twenty_training_films_copied_under_new_names(trained, phantom_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantom_data.images / "test", data / "test")
    train_files = sorted(s.path for s in discover(phantom_data.images).split("train"))[:20]
    copies = []
    for i, source in enumerate(train_files):
        cls = "NORMAL" if "/NORMAL/" in source else "PNEUMONIA"
        target = data / "test" / cls / f"scan{i:03d}.png"  # no patient id in the name: only the content can tell
        shutil.copy(source, target)
        copies.append(str(target))
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(trained / "model.pt"),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "eval"),
            "--bootstrap",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "LEAKAGE" in result.output
    folder = next((tmp_path / "eval").glob("evaluate-test-*"))
    leakage = json.loads((folder / "metrics.json").read_text())["leakage"]
    assert leakage["n_images_seen_in_training"] == 20 and leakage["n_images_seen_in_selection"] == 0
    assert leakage["n_patients_shared_with_training"] == 0 and leakage["examples"] == sorted(copies)[:10]
    listed = (folder / "leakage.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in listed) == sorted(copies)
    strict = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(trained / "model.pt"),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "strict"),
            "--strict",
        ],
    )
    assert strict.exit_code == 2 and "LEAKAGE" in strict.output and not (tmp_path / "strict").exists()


def test_clean_test_split_has_no_leakage(trained, phantom_data, tmp_path):
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(trained / "model.pt"),
            "--data",
            str(phantom_data.images),
            "--out",
            str(tmp_path),
            "--bootstrap",
            "20",
            "--strict",
        ],
    )
    assert result.exit_code == 0, result.output
    leakage = json.loads(next(tmp_path.glob("evaluate-*/metrics.json")).read_text())["leakage"]
    assert [
        leakage[k]
        for k in (
            "n_images_seen_in_training",
            "n_images_seen_in_selection",
            "n_patients_shared_with_training",
            "n_patients_shared_with_selection",
        )
    ] == [0, 0, 0, 0]
    assert leakage["n_images_evaluated"] == 16


def test_file_sha1_equals_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "x.bin"
    path.write_bytes(bytes(range(256)) * 5000)
    assert file_sha1(path) == hashlib.sha1(path.read_bytes()).hexdigest()


def test_training_from_a_checkpoint_inherits_the_films_it_has_seen(trained, phantom_data, tmp_path):
    """--weights model.pt: the films that trained and selected the starting model count as seen by the new one, so
    a later evaluation on them reports leakage although the new run's own split never held them."""
    from pneumocam import started_random
    from pneumocam.data.phantoms import write_phantom_dataset
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    other = write_phantom_dataset(tmp_path / "other", {"train": 10, "val": 4}, size=64, seed=11)
    config = TrainConfig(
        data=str(other.images),
        mode="frozen",
        weights=str(trained / "model.pt"),
        image_size=32,
        epochs=1,
        batch_size=16,
        val_source="dataset",
        seed=2,
        use_cache=False,
    )
    _, meta = load_checkpoint(fit(config, runs_dir=tmp_path / "runs") / "model.pt")
    first = discover(phantom_data.images)
    # The fixture writes 24 train and 6 val phantoms per class; the new run trained on 10 + 10 and selected on 4 + 4.
    leakage = check_leakage(meta, first.split("train") + first.split("val"))
    assert (leakage.n_images_seen_in_training, leakage.n_images_seen_in_selection) == (48, 12)
    assert meta["seen"]["training"]["n_images"] == 48 + 20 and meta["seen"]["selection"]["n_images"] == 12 + 8
    assert meta["seen"]["inherited_from"] == str((trained / "model.pt").resolve())
    assert started_random(meta["weights"]) and meta["weights"]["source"] == "file"
    assert any("RANDOM INITIALISATION" in note for note in meta["weights"]["notes"])


def test_training_and_selection_patient_counts_are_told_apart():
    """Two evaluated patients also trained the model, one other selected it: counted as 2 and 1 (hand count)."""
    seen = {"training": {"sha1": [], "patients": ["p1", "p2", "p9"]}, "selection": {"sha1": [], "patients": ["p3"]}}
    samples = [Sample(f"/x/{p}-{i}.png", 0, "test", p) for p in ("p1", "p2", "p3", "p4") for i in (0, 1)]
    found = check_leakage({"seen": seen}, samples, hashes=["h"] * len(samples))
    assert found.n_patients_shared_with_training == 2 and found.n_patients_shared_with_selection == 1
    assert found.n_images_seen_in_training == found.n_images_seen_in_selection == 0


def test_a_continued_model_inherits_every_film_and_patient_its_starting_weights_saw():
    """--weights model.pt: the new record is the union of both records, per part, counted by hand."""
    from pneumocam.evaluation.leakage import inherit_seen

    own = {
        "training": {"sha1": ["a", "b"], "patients": ["p1", "p2"], "n_images": 2},
        "selection": {"sha1": ["c"], "patients": ["p3"], "n_images": 1},
    }
    earlier = {
        "training": {"sha1": ["b", "d"], "patients": ["p2", "p4"], "n_images": 2},
        "selection": {"sha1": ["e"], "patients": ["p5"], "n_images": 1},
    }
    joined = inherit_seen(own, earlier, "start.pt")
    assert joined["training"] == {"sha1": ["a", "b", "d"], "patients": ["p1", "p2", "p4"], "n_images": 3}
    assert joined["selection"] == {"sha1": ["c", "e"], "patients": ["p3", "p5"], "n_images": 2}
    assert joined["inherited_from"] == "start.pt"
    assert inherit_seen(own, None, "start.pt") is own


def test_the_leakage_message_record_and_csv_say_what_was_found(tmp_path):
    import csv

    from pneumocam.evaluation.leakage import Leakage

    rows = [("x/1.png", "training"), ("x/2.png", "selection")]
    found = Leakage(10, 2, 1, 3, 0, ["x/1.png", "x/2.png", "x/3.png", "x/4.png"], True, rows)
    message = found.message()
    assert message.startswith("LEAKAGE: of 10 evaluated images, 2 were used in training and 1 in selection")
    assert "3 patients also appear in training and 0 in selection. These scores are not held-out." in message
    assert message.endswith("First examples: x/1.png, x/2.png, x/3.png")  # three, not four
    assert found.to_dict() == {
        "n_images_evaluated": 10, "n_images_seen_in_training": 2, "n_images_seen_in_selection": 1,
        "n_patients_shared_with_training": 3, "n_patients_shared_with_selection": 0,
        "examples": ["x/1.png", "x/2.png", "x/3.png", "x/4.png"], "recorded": True,
    }  # fmt: skip
    found.write_csv(tmp_path / "leakage.csv")
    with open(tmp_path / "leakage.csv", newline="") as f:
        assert list(csv.reader(f)) == [["path", "seen_as"], ["x/1.png", "training"], ["x/2.png", "selection"]]
    clean = Leakage(7, 0, 0, 0, 0)
    assert clean.message() == "none of the 7 evaluated images or their patients were seen in training or selection"
    unrecorded = Leakage(7, None, None, None, None, recorded=False)
    assert unrecorded.message().startswith("this checkpoint does not record what it was trained on")


def test_a_checkpoint_without_a_record_reports_the_count_and_nothing_else():
    evaluated = [Sample(f"/films/f{i}.png", 0, "test", None) for i in range(4)]
    leak = check_leakage({}, evaluated)
    assert leak.to_dict() == {
        "n_images_evaluated": 4,
        "n_images_seen_in_training": None,
        "n_images_seen_in_selection": None,
        "n_patients_shared_with_training": None,
        "n_patients_shared_with_selection": None,
        "examples": [],
        "recorded": False,
    }
    assert not leak.found and "could not be checked" in leak.message()


def test_hashes_given_in_the_callers_order_are_matched_to_their_own_films(tmp_path):
    """Samples passed in reverse path order with their hashes in that order: the one training film (f2, hash "h2")
    is the one reported, under its own path (hashes paired by position with the path-sorted films would put "h2" on
    f3: four films, so the middle does not map onto itself)."""
    evaluated = [Sample(str(tmp_path / f"f{i}.png"), 0, "test", None) for i in (4, 3, 2, 1)]
    seen = {"sha1": ["h2"], "patients": [], "n_images": 1}
    meta = {"seen": {"training": seen, "selection": {"sha1": [], "patients": [], "n_images": 0}}}
    leak = check_leakage(meta, evaluated, hashes=["h4", "h3", "h2", "h1"])
    assert leak.n_images_seen_in_training == 1 and leak.examples == [str(tmp_path / "f2.png")]


def test_a_file_rewritten_in_place_gets_its_new_hash(tmp_path):
    import hashlib

    path = tmp_path / "x.bin"
    path.write_bytes(b"first")
    assert file_sha1(path) == hashlib.sha1(b"first").hexdigest()
    path.write_bytes(b"second, longer")  # another size: another stamp
    assert file_sha1(path) == hashlib.sha1(b"second, longer").hexdigest()
