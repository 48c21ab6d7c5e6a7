"""A shortcut baseline that needs no model: how well the label is predicted from what the acquisition leaves behind.

Zech et al. (PLoS Medicine 2018) found the hospital and department predictable from chest films alone; in Kermany the
acquisition families differ. If a logistic regression on the file's traces ranks NORMAL against PNEUMONIA well, a
deep model can score as well without looking at any lung. The features, per film:
- the original file: width, height, aspect ratio, log file size, bits per pixel (from its mode), format;
- the film read at the model's size: an 8-bin intensity histogram, and the mean and standard deviation of its
  border band (the outer BORDER of the side, where markers and collimation sit);
- the acquisition family of its name, where the name carries one (data/split.py) and the family holds films of both
  classes (a family of one class only is the label's own name: Kermany's `person*` files are all PNEUMONIA).
The model: scikit-learn's StandardScaler + LogisticRegression, its ROC-AUC from out-of-fold probabilities of a
GroupKFold by patient (a patient's films never on both sides). The features that carry it: the largest absolute
standardised coefficients of the same model fitted on all films. An AUC of WARN_AUC or more is a warning a reader
must see: the label is written in the acquisition.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pneumocam.core.defaults import SEED

BORDER = 0.08
HISTOGRAM_BINS = 8
FOLDS = 5
WARN_AUC = 0.8
BITS = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "I;16": 16, "I;16B": 16, "I": 32, "F": 32}
FORMATS = ("JPEG", "PNG", "DICOM", "other")


def file_traces(path: str) -> list[float]:
    """Width, height, aspect ratio, log2 file size, bits per pixel and the format's one-hot, from the file's header
    (nothing decoded); NaN where the header cannot be read (a DICOM's size comes from its tags)."""
    size = os.path.getsize(path)
    try:
        with Image.open(path) as image:
            width, height, bits, kind = *image.size, BITS.get(image.mode, 8), image.format or "other"
    except (OSError, ValueError):
        width = height = bits = float("nan")
        kind = "DICOM" if path.lower().endswith(".dcm") else "other"
    kind = kind if kind in FORMATS else "other"
    aspect = width / height if height == height and height else float("nan")
    return [width, height, aspect, float(np.log2(max(size, 1))), bits, *(float(kind == f) for f in FORMATS)]


def film_traces(gray: np.ndarray) -> list[float]:
    """The film at the model's size (uint8): its intensity histogram (shares) and its border band's mean and std."""
    histogram = np.bincount(np.asarray(gray, dtype=np.uint8).ravel() // (256 // HISTOGRAM_BINS), minlength=8)
    band = max(1, int(round(BORDER * gray.shape[0])))
    border = np.ones(gray.shape, dtype=bool)
    border[band:-band, band:-band] = False
    values = gray[border].astype(np.float64)
    return [*(histogram / histogram.sum()), float(values.mean()), float(values.std())]


def feature_names(families: list[str]) -> list[str]:
    return [
        "width", "height", "aspect_ratio", "log2_file_bytes", "bits_per_pixel", *(f"format_{f}" for f in FORMATS),
        *(f"histogram_{i}" for i in range(HISTOGRAM_BINS)), "border_mean", "border_std",
        *(f"family_{f}" for f in families),
    ]  # fmt: skip


def shortcut_features(loaded) -> tuple[np.ndarray, list[str]]:
    """(one row of features per film of `loaded`, their names). Columns constant over the films (a single format,
    no family) are kept: they carry nothing and cost nothing."""
    classes: dict[str, set] = {}
    for s in loaded.samples:
        if s.family:
            classes.setdefault(s.family, set()).add(s.label)
    families = sorted(f for f, labels in classes.items() if len(labels) == 2)
    rows = []
    for sample, gray in zip(loaded.samples, loaded.images):
        family = [float(sample.family == f) for f in families]
        rows.append(file_traces(sample.path) + film_traces(gray) + family)
    return np.asarray(rows, dtype=np.float64), feature_names(families)


def shortcut_baseline(features: np.ndarray, labels, groups, seed: int = SEED, top: int = 5) -> dict:
    """The baseline's record: ROC-AUC of out-of-fold probabilities (GroupKFold by `groups`, FOLDS folds at most),
    the features that carry it, the warning. NaN features are replaced by their column's median."""
    x = np.array(features, dtype=np.float64)
    medians = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    x = np.where(np.isfinite(x), x, np.nan_to_num(medians)[None, :])
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    folds = min(FOLDS, len(set(groups.tolist())))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probs = cross_val_predict(model, x, labels, groups=groups, cv=GroupKFold(folds), method="predict_proba")[:, 1]
    auc = float(roc_auc_score(labels, probs))
    coef = model.fit(x, labels)[-1].coef_[0]
    order = np.argsort(-np.abs(coef))[:top]
    return {
        "roc_auc": auc,
        "n_films": int(len(labels)),
        "folds": int(folds),
        "grouped_by": "patient",
        "carried_by": [{"feature": int(i), "coefficient": float(coef[i])} for i in order],
        "warning": auc >= WARN_AUC,
        "warn_at": WARN_AUC,
    }


def film_groups(samples) -> list[str]:
    """A patient per film for the folds: its patient id, else the film itself (one film, one group)."""
    return [s.patient_id or f"film:{s.path}" for s in samples]


def describe(record: dict, names: list[str]) -> dict:
    """The record with its carrying features named."""
    named = [{"feature": names[c["feature"]], "coefficient": c["coefficient"]} for c in record["carried_by"]]
    return record | {"carried_by": named}
