"""WebDataset shards: the shared data written to shards and read back gives the same images and labels."""

import numpy as np
import pytest

from pneumocam.data import discover, read_grayscale
from pneumocam.data.webdataset_io import describe, read_shards, write_shards

from .conftest import KERMANY


@pytest.mark.shared_data
def test_shared_data_round_trips_through_webdataset_shards(tmp_path):
    index = discover(KERMANY)
    samples = index.split("val") + index.split("train")[:40]  # both splits, both classes
    assert {s.label for s in samples} == {0, 1} and {s.split for s in samples} == {"train", "val"}
    shards = write_shards(samples, str(tmp_path / "kermany-%06d.tar"), max_count=20)
    assert len(shards) == 3  # 56 samples, 20 per shard
    back = list(read_shards(str(tmp_path / "kermany-{000000..000002}.tar")))
    assert len(back) == len(samples)
    for sample, (_, gray, label, split, patient, source) in zip(samples, back):
        assert np.array_equal(gray, read_grayscale(sample.path))
        assert (label, split, patient) == (sample.label, sample.split, sample.patient_id)
        assert source == sample.path.rsplit("/", 1)[-1]
    assert describe(shards) == {
        "val": {"NORMAL": 8, "PNEUMONIA": 8},
        "train": {
            "NORMAL": sum(s.label == 0 for s in samples[16:]),
            "PNEUMONIA": sum(s.label == 1 for s in samples[16:]),
        },
    }


def test_dicom_bytes_are_kept_as_dicom(tmp_path, write_dicom):
    from pneumocam.data import Sample

    path = write_dicom(tmp_path / "a.dcm", np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (60, 1)), "MONOCHROME2")
    write_shards([Sample(str(path), 1, "test", "p1")], str(tmp_path / "s-%06d.tar"))
    ((_, gray, label, split, patient, _),) = list(read_shards(str(tmp_path / "s-000000.tar")))
    assert np.array_equal(gray, read_grayscale(path)) and (label, split, patient) == (1, "test", "p1")


def _shards_of(folder, out, max_count=30) -> str:
    """Write a dataset folder into shards; returns the brace pattern that names them all."""
    shards = write_shards(discover(folder).samples, str(out / "p-%06d.tar"), max_count=max_count)
    return str(out) + "/p-{000000..%06d}.tar" % (len(shards) - 1)


def test_training_on_shards_equals_training_on_the_folder(phantom_data, tmp_path):
    """--data shards/{...}.tar: the same films, labels, patients and order as the folder, so the same model."""
    import torch

    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    spec = _shards_of(phantom_data.images, tmp_path / "shards")
    folder, sharded = discover(phantom_data.images), discover(spec)
    assert sharded.source == "webdataset" and len(sharded.samples) == len(folder.samples) == 2 * (24 + 6 + 8)
    for a, b in zip(folder.samples, sharded.samples):
        assert (a.label, a.split, a.patient_id) == (b.label, b.split, b.patient_id)
        assert "::" in b.path and np.array_equal(read_grayscale(a.path), read_grayscale(b.path))

    def train(data):
        config = TrainConfig(
            data=data,
            mode="frozen",
            weights="none",
            image_size=32,
            epochs=2,
            batch_size=16,
            val_source="dataset",
            seed=1,
        )
        return torch.load(fit(config, runs_dir=tmp_path / "runs") / "model.pt", weights_only=True)

    on_folder, on_shards = train(str(phantom_data.images)), train(spec)
    for name, tensor in on_folder["state_dict"].items():
        assert torch.equal(tensor, on_shards["state_dict"][name]), name
    assert on_folder["metadata"]["val_metrics"] == on_shards["metadata"]["val_metrics"]
    assert on_shards["metadata"]["data"]["fingerprint"] != on_folder["metadata"]["data"]["fingerprint"]


def test_evaluating_shards_gives_the_folders_probabilities(phantom_data, tiny_checkpoint, tmp_path):
    import csv

    from pneumocam.evaluation.evaluate import evaluate_split
    from pneumocam.model.network import load_checkpoint
    from pneumocam.model.session import InferenceSession

    spec = _shards_of(phantom_data.images, tmp_path / "shards")
    model, meta = load_checkpoint(tiny_checkpoint / "model.pt")
    probabilities = []
    for data, out in ((str(phantom_data.images), tmp_path / "a"), (spec, tmp_path / "b")):
        result = evaluate_split(InferenceSession.of_model(model, meta), data, "test", out, bootstrap_resamples=20)
        assert result["leakage"]["n_images_seen_in_training"] == 0
        with open(out / "predictions.csv", newline="") as f:
            probabilities.append([float(r["prob_pneumonia"]) for r in csv.DictReader(f)])
    assert len(probabilities[0]) == 16 and probabilities[0] == pytest.approx(probabilities[1], abs=1e-6)


def test_shards_written_by_other_tools_and_bad_shards(tmp_path):
    """A shard made with Python's tarfile (cls labels, no json); a missing shard, a sample without a label."""
    import io
    import tarfile

    from PIL import Image

    from pneumocam.core.errors import DataError

    def add(archive, name, content: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))

    films = {}
    with tarfile.open(tmp_path / "other-0.tar", "w") as archive:
        for i, label in enumerate(["1", "0", "PNEUMONIA"]):
            films[i] = np.random.default_rng(i).integers(0, 255, (40, 50), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(films[i]).save(buffer, format="PNG")
            add(archive, f"dir/s{i}.png", buffer.getvalue())
            add(archive, f"dir/s{i}.cls", label.encode())
        add(archive, "dir/readme.txt", b"not a sample")
    index = discover(str(tmp_path / "other-0.tar"))
    assert [s.label for s in index.samples] == [1, 0, 1] and {s.split for s in index.samples} == {"train"}
    for i, sample in enumerate(index.samples):
        assert sample.path == f"{tmp_path}/other-0.tar::dir/s{i}.png"
        assert np.array_equal(read_grayscale(sample.path), films[i])
    with pytest.raises(DataError, match="shard not found: .*other-1.tar"):
        discover(str(tmp_path / "other-{0..1}.tar"))
    with tarfile.open(tmp_path / "nolabel.tar", "w") as archive:
        add(archive, "x.png", b"\x89PNG")
    with pytest.raises(DataError, match="sample /x: no label"):
        discover(str(tmp_path / "nolabel.tar"))
