"""The public chest X-ray sets users bring (NIH ChestX-ray14, RSNA Pneumonia, CheXpert, MIMIC-CXR-JPG), as a
NORMAL / PNEUMONIA manifest.

Reading each set's label files is TorchXRayVision's job (its dataset classes parse the official CSVs, join
metadata, select views and mark uncertain labels): pneumocam only maps their labels onto two classes and writes
a CSV manifest (path,label,patient_id,split) that every command reads. The mapping, one rule for all four sets:

- PNEUMONIA: the set's Pneumonia label is positive (RSNA: Target 1, a pneumonia-like lung opacity);
- NORMAL: the film has no finding (NIH: no label; CheXpert / MIMIC: No Finding = 1; RSNA: class "Normal" in
  stage_2_detailed_class_info.csv when given, else Target 0, which also holds abnormal films without opacity);
- everything else is left out and counted: other findings, uncertain (-1) or missing Pneumonia labels.

Every film goes to split "train"; evaluate on held-out patients (`--eval-split heldout`) or on a split of your own.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pneumocam.core.errors import DataError

LAYOUTS = ("nih", "rsna", "chexpert", "mimic")


@dataclass
class PublicManifest:
    layout: str
    rows: list[tuple[str, str, str, str]]  # path, label, patient_id, split
    left_out: Counter = field(default_factory=Counter)  # reason -> films
    rule: str = ""

    def counts(self) -> dict[str, int]:
        return dict(Counter(label for _, label, _, _ in self.rows))


def _xrv():
    try:
        import torchxrayvision  # deferred: only public-set manifests need it (slow to import)
    except ImportError as exc:  # pragma: no cover - installed with pneumocam
        raise DataError("reading public datasets needs torchxrayvision (pip install torchxrayvision)") from exc
    return torchxrayvision.datasets


def _label_column(dataset, name: str) -> np.ndarray:
    return dataset.labels[:, list(dataset.pathologies).index(name)]


def _assign(pneumonia: np.ndarray, normal: np.ndarray, uncertain: np.ndarray) -> tuple[list[str | None], Counter]:
    labels: list[str | None] = []
    left_out: Counter = Counter()
    for positive, healthy, unsure in zip(pneumonia, normal, uncertain):
        if positive:
            labels.append("PNEUMONIA")
        elif healthy:
            labels.append("NORMAL")
        else:
            labels.append(None)
            left_out["pneumonia label uncertain or missing" if unsure else "other findings"] += 1
    return labels, left_out


def public_manifest(
    layout: str, images: str, labels: str | None = None, metadata: str | None = None, views=("PA", "AP")
) -> PublicManifest:
    """The NORMAL / PNEUMONIA films of a public set. images: the image folder as the set ships it; labels: the
    label CSV (NIH and RSNA default to the copies TorchXRayVision ships); metadata: MIMIC's metadata CSV, RSNA's
    stage_2_detailed_class_info.csv (optional)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout '{layout}': choose one of {', '.join(LAYOUTS)}")
    if not os.path.isdir(images):
        raise DataError(f"image folder not found: {images}")
    for name, path in (("labels", labels), ("metadata", metadata)):
        if path is not None and not os.path.isfile(path):
            raise DataError(f"{name} file not found: {path}")
    datasets, views = _xrv(), list(views)
    included = {} if labels is None else {"csvpath": labels}
    if layout == "nih":
        ds = datasets.NIH_Dataset(images, views=views, unique_patients=False, **included)
        pneumonia = _label_column(ds, "Pneumonia") == 1
        normal = ds.labels.sum(axis=1) == 0  # "No Finding": none of the 14 labels
        paths = [os.path.join(images, name) for name in ds.csv["Image Index"]]
        found, left_out = _assign(pneumonia, normal, np.zeros(len(paths), bool))
        rule = "PNEUMONIA: Finding Labels include Pneumonia; NORMAL: No Finding"
    elif layout == "rsna":
        ds = datasets.RSNA_Pneumonia_Dataset(images, views=views, extension=".dcm", **included)
        target = ds.csv["Target"].to_numpy()
        normal = target == 0
        rule = "PNEUMONIA: Target 1 (lung opacity); NORMAL: Target 0"
        if metadata is not None:
            import pandas as pd  # deferred: only public-set manifests need it

            classes = pd.read_csv(metadata).groupby("patientId")["class"].first()
            normal = normal & (ds.csv["patientId"].map(classes).to_numpy() == "Normal")
            rule = "PNEUMONIA: Target 1 (lung opacity); NORMAL: class Normal (detailed class info)"
        paths = [os.path.join(images, f"{pid}.dcm") for pid in ds.csv["patientId"]]
        found, left_out = _assign(target == 1, normal, np.zeros(len(paths), bool))
    elif layout == "chexpert":
        if labels is None:
            raise DataError("chexpert needs --labels: the train.csv or valid.csv that ships with the images")
        ds = datasets.CheX_Dataset(images, views=views, unique_patients=False, **included)
        column = _label_column(ds, "Pneumonia")
        paths = [
            os.path.join(images, p.replace("CheXpert-v1.0-small/", "").replace("CheXpert-v1.0/", ""))
            for p in ds.csv["Path"]
        ]
        found, left_out = _assign(column == 1, (ds.csv["No Finding"] == 1).to_numpy(), np.isnan(column))
        rule = "PNEUMONIA: Pneumonia = 1; NORMAL: No Finding = 1; uncertain (-1) or blank Pneumonia left out"
    else:
        if labels is None or metadata is None:
            raise DataError("mimic needs --labels (mimic-cxr-2.0.0-chexpert.csv) and --metadata (…-metadata.csv)")
        ds = datasets.MIMIC_Dataset(images, labels, metadata, views=views, unique_patients=False)
        column = _label_column(ds, "Pneumonia")
        paths = [
            os.path.join(images, f"p{str(s)[:2]}", f"p{s}", f"s{t}", f"{d}.jpg")
            for s, t, d in zip(ds.csv["subject_id"], ds.csv["study_id"], ds.csv["dicom_id"])
        ]
        found, left_out = _assign(column == 1, (ds.csv["No Finding"] == 1).to_numpy(), np.isnan(column))
        rule = "PNEUMONIA: Pneumonia = 1; NORMAL: No Finding = 1; uncertain (-1) or blank Pneumonia left out"
    patients = ds.csv["patientid"].astype(str).tolist()
    rows = []
    for path, label, patient in zip(paths, found, patients):
        if label is None:
            continue
        if not os.path.isfile(path):  # label files list the whole set; a folder may hold part of it
            left_out["image not in the folder"] += 1
            continue
        rows.append((path, label, patient, "train"))
    return PublicManifest(layout, rows, left_out, rule + f"; views {', '.join(views)}")


__all__ = ["LAYOUTS", "PublicManifest", "public_manifest"]
