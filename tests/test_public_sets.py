"""Public CXR layouts -> NORMAL / PNEUMONIA manifests: label files in each set's official columns, written here with
a hand count of what each row must become."""

import csv

import numpy as np
import pytest
import torchxrayvision  # noqa: F401  (a hard dependency: imported plainly, so its absence fails, never skips)
from PIL import Image
from typer.testing import CliRunner

from pneumocam.cli.app import app
from pneumocam.core.errors import DataError
from pneumocam.data import discover
from pneumocam.data.public import public_manifest


def _film(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(path)


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_nih_maps_pneumonia_and_no_finding(tmp_path):
    images = tmp_path / "images"
    rows = [
        ("a.png", "Pneumonia", "1", "PA"),  # PNEUMONIA
        ("b.png", "Infiltration|Pneumonia", "2", "AP"),  # PNEUMONIA (with another finding)
        ("c.png", "No Finding", "3", "PA"),  # NORMAL
        ("d.png", "Effusion", "4", "PA"),  # other finding: left out
        ("e.png", "No Finding", "5", "LL"),  # lateral view: not kept
        ("f.png", "No Finding", "6", "PA"),  # listed, but not in the folder
    ]
    for name, *_ in rows[:5]:
        _film(images / name)
    labels = _write(
        tmp_path / "Data_Entry_2017.csv",
        [
            "Image Index",
            "Finding Labels",
            "Follow-up #",
            "Patient ID",
            "Patient Age",
            "Patient Gender",
            "View Position",
        ],
        [(n, f, 0, p, 40, "M", v) for n, f, p, v in rows],
    )
    found = public_manifest("nih", str(images), str(labels))
    assert [(r[0].rsplit("/", 1)[1], r[1], r[2]) for r in found.rows] == [
        ("a.png", "PNEUMONIA", "1"),
        ("b.png", "PNEUMONIA", "2"),
        ("c.png", "NORMAL", "3"),
    ]
    assert found.left_out == {"other findings": 1, "image not in the folder": 1}


def test_chexpert_leaves_uncertain_labels_out(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Pneumonia", "Edema"]
    rows = [
        ("CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg", "Male", 50, "Frontal", "AP", "", 1.0, ""),
        ("CheXpert-v1.0-small/train/patient2/study1/view1_frontal.jpg", "Male", 50, "Frontal", "PA", 1.0, "", ""),
        ("CheXpert-v1.0-small/train/patient3/study1/view1_frontal.jpg", "Female", 60, "Frontal", "AP", "", -1.0, ""),
        ("CheXpert-v1.0-small/train/patient4/study1/view1_frontal.jpg", "Female", 60, "Frontal", "AP", "", "", 1.0),
        ("CheXpert-v1.0-small/train/patient5/study1/view2_lateral.jpg", "Male", 30, "Lateral", "", 1.0, "", ""),
    ]
    for row in rows:
        _film(root / row[0].replace("CheXpert-v1.0-small/", ""))
    labels = _write(root / "train.csv", header, rows)
    found = public_manifest("chexpert", str(root), str(labels))
    assert [(r[1], r[2]) for r in found.rows] == [("PNEUMONIA", "1"), ("NORMAL", "2")]
    assert found.rows[0][0] == str(root / "train/patient1/study1/view1_frontal.jpg")
    # patient 3: Pneumonia -1 (uncertain); patient 4: Pneumonia blank with Edema: both left out; patient 5 lateral
    assert found.left_out == {"pneumonia label uncertain or missing": 2}


def test_mimic_joins_metadata_for_paths_and_views(tmp_path):
    images = tmp_path / "files"
    labels = _write(
        tmp_path / "mimic-cxr-2.0.0-chexpert.csv",
        ["subject_id", "study_id", "No Finding", "Pneumonia"],
        [(10000032, 50414267, "", 1.0), (10000033, 50000001, 1.0, ""), (10000034, 50000002, "", 0.0)],
    )
    meta = _write(
        tmp_path / "mimic-cxr-2.0.0-metadata.csv",
        ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate"],
        [("d1", 10000032, 50414267, "PA", 1), ("d2", 10000033, 50000001, "AP", 1), ("d3", 10000034, 50000002, "PA", 1)],
    )
    for subject, study, dicom in ((10000032, 50414267, "d1"), (10000033, 50000001, "d2"), (10000034, 50000002, "d3")):
        _film(images / "p10" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg")
    found = public_manifest("mimic", str(images), str(labels), str(meta))
    assert [(r[1], r[2]) for r in found.rows] == [("PNEUMONIA", "10000032"), ("NORMAL", "10000033")]
    assert found.rows[0][0] == str(images / "p10/p10000032/s50414267/d1.jpg")
    assert found.left_out == {"other findings": 1}  # Pneumonia 0 without No Finding


def test_rsna_normal_from_the_detailed_classes_and_the_cli_writes_a_manifest(tmp_path, write_dicom):
    images = tmp_path / "stage_2_train_images"
    images.mkdir()
    ids = ["p1", "p2", "p3"]
    for pid in ids:
        write_dicom(images / f"{pid}.dcm", np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (60, 1)), "MONOCHROME2")
    labels = _write(
        tmp_path / "stage_2_train_labels.csv",
        ["patientId", "x", "y", "width", "height", "Target"],
        [("p1", 10, 10, 50, 50, 1), ("p2", "", "", "", "", 0), ("p3", "", "", "", "", 0)],
    )
    classes = _write(
        tmp_path / "stage_2_detailed_class_info.csv",
        ["patientId", "class"],
        [("p1", "Lung Opacity"), ("p2", "Normal"), ("p3", "No Lung Opacity / Not Normal")],
    )
    # these ids have no DICOM headers in TorchXRayVision's table, so their view is unknown: keep every view
    found = public_manifest("rsna", str(images), str(labels), str(classes), views=["*"])
    assert [(r[1], r[2]) for r in found.rows] == [("PNEUMONIA", "p1"), ("NORMAL", "p2")]
    assert found.left_out == {"other findings": 1}
    out = tmp_path / "rsna.csv"
    result = CliRunner().invoke(
        app, ["manifest", "rsna", "--images", str(images), "--labels", str(labels), "--views", "*", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "2 NORMAL, 1 PNEUMONIA" in result.output  # without the detailed classes, Target 0 is NORMAL
    index = discover(out)
    assert sorted((s.label, s.patient_id) for s in index.samples) == [(0, "p2"), (0, "p3"), (1, "p1")]


def test_bad_public_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="unknown layout 'padchest'"):
        public_manifest("padchest", str(tmp_path))
    with pytest.raises(DataError, match="image folder not found"):
        public_manifest("nih", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="chexpert needs --labels"):
        public_manifest("chexpert", str(tmp_path))
