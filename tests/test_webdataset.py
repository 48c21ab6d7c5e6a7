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
