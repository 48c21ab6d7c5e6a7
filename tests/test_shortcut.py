"""The shortcut baseline (analysis/shortcut.py): its AUC is scikit-learn's on the same features, near 1 when the
label is written in the border and near 0.5 when it is not."""

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pneumocam.analysis.shortcut import describe, film_groups, shortcut_baseline, shortcut_features
from pneumocam.data import LoadedImages
from pneumocam.data.discover import Sample


def _films(tmp_path, coded: bool, per_class: int = 30):
    rng = np.random.default_rng(0)
    samples, images = [], []
    for i in range(2 * per_class):
        label = i % 2
        film = rng.normal(120, 30, (48, 48))
        if coded and label:
            film[:4], film[-4:], film[:, :4], film[:, -4:] = 220, 220, 220, 220  # a bright frame: the label
        film = np.clip(film, 0, 255).astype(np.uint8)
        path = tmp_path / f"film{i}.png"
        Image.fromarray(film).save(path)
        samples.append(Sample(str(path), label, "train", f"p{i // 4}"))  # 4 films a patient
        images.append(film)
    return LoadedImages(samples, np.stack(images), [], False)


@pytest.mark.parametrize("coded", [True, False])
def test_the_baseline_is_scikit_learn_on_the_same_features(tmp_path, coded):
    loaded = _films(tmp_path, coded)
    features, names = shortcut_features(loaded)
    record = shortcut_baseline(features, loaded.labels, film_groups(loaded.samples))
    # scikit-learn, written out: standardised logistic regression, out-of-fold by patient
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0))
    groups = [s.patient_id for s in loaded.samples]
    probs = cross_val_predict(model, features, loaded.labels, groups=groups, cv=GroupKFold(5), method="predict_proba")
    assert record["roc_auc"] == pytest.approx(roc_auc_score(loaded.labels, probs[:, 1]))
    if coded:
        assert record["roc_auc"] > 0.95 and record["warning"]
        assert describe(record, names)["carried_by"][0]["feature"].startswith(("border", "histogram"))
    else:
        assert abs(record["roc_auc"] - 0.5) < 0.2 and not record["warning"]
    assert features.shape == (60, len(names)) and names[0] == "width" and features[0, 0] == 48


def test_a_run_records_the_baseline_and_its_report_warns_when_it_is_high(tiny_run):
    import json

    from pneumocam.report.text import shortcut_banner

    shortcut = json.loads((tiny_run / "results.json").read_text())["shortcut"]
    assert shortcut["n_films"] == 16 and shortcut["grouped_by"] == "patient"
    assert shortcut_banner(shortcut | {"warning": False}) is None
    banner = shortcut_banner(shortcut | {"warning": True, "roc_auc": 0.93})
    assert "SHORTCUT POSSIBLE" in banner.text and "0.930" in banner.text
