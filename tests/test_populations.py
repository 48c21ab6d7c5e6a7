"""Populations and strata (evaluation/populations.py, data/discover.py): per-group metrics against scikit-learn,
leave-one-population-out folds, thresholds that travel, and a manifest's strata and populations by hand count."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from pneumocam.data import discover
from pneumocam.evaluation.populations import (
    group_metrics,
    leave_one_population_out,
    sensitivity_threshold,
    strata_metrics,
    travelling_thresholds,
)

from .conftest import SHARED


def test_per_population_metrics_equal_scikit_learn_on_each_subset():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    groups = np.array(["kermany"] * 120 + ["nih"] * 150 + [None] * 30, dtype=object)
    probs = np.clip(labels * 0.3 + rng.normal(0.4, 0.2, 300) + (groups == "nih") * 0.2, 0, 1)
    found = group_metrics(labels, probs, groups, {"fixed": 0.5, "chosen": 0.62})
    assert set(found) == {"kermany", "nih"}  # films with no population left out
    for name in ("kermany", "nih"):
        y, p = labels[groups == name], probs[groups == name]
        assert found[name]["n"] == len(y) and found[name]["n_pneumonia"] == int(y.sum())
        assert found[name]["roc_auc"] == pytest.approx(roc_auc_score(y, p))
        # top-label ECE by hand: confidence max(p, 1 - p) in 15 equal bins over (0.5, 1], weighted by their counts
        confidence, correct = np.maximum(p, 1 - p), (p >= 0.5) == y
        bins = np.clip(np.ceil((confidence - 0.5) * 30).astype(int) - 1, 0, 14)
        ece = sum(
            (bins == b).sum() / len(p) * abs(correct[bins == b].mean() - confidence[bins == b].mean())
            for b in set(bins)
        )
        assert found[name]["ece"] == pytest.approx(ece)
        for key, t in (("fixed", 0.5), ("chosen", 0.62)):
            pred = (p >= t).astype(int)
            assert found[name]["at"][key]["threshold"] == t
            assert found[name]["at"][key]["accuracy"] == pytest.approx(accuracy_score(y, pred))
            assert found[name]["at"][key]["sensitivity"] == pytest.approx(recall_score(y, pred))
            assert found[name]["at"][key]["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    # the two populations differ in specificity at 0.5: the fixture covers a threshold that does not travel
    assert found["nih"]["at"]["fixed"]["specificity"] < found["kermany"]["at"]["fixed"]["specificity"] - 0.1


def test_leave_one_population_out_never_puts_a_population_on_both_sides():
    populations = ["a"] * 5 + ["b"] * 3 + [None] * 2 + ["c"] * 4
    folds = leave_one_population_out(populations)
    assert [name for name, _, _ in folds] == ["a", "b", "c"]
    values = np.array(populations, dtype=object)
    for name, train, val in folds:
        assert set(values[val]) == {name} and name not in set(values[train])
        assert len(train) + len(val) == len(populations)  # films with no population always train
    assert sorted(np.concatenate([val for _, _, val in folds]).tolist()) == [i for i, p in enumerate(populations) if p]
    with pytest.raises(ValueError, match="two populations"):
        leave_one_population_out(["a", "a", None])
    assert [name for name, _, _ in leave_one_population_out(["a", "b", "a"])] == ["a", "b"]  # two are enough


def test_a_group_of_one_class_has_no_auc_but_its_decisions():
    found = group_metrics([1, 1, 0, 1], [0.9, 0.4, 0.2, 0.8], ["a", "a", "b", "b"], {"fixed": 0.5})
    assert found["a"]["roc_auc"] is None and found["a"]["at"]["fixed"]["sensitivity"] == 0.5
    assert found["a"]["at"]["fixed"]["specificity"] is None and found["b"]["roc_auc"] == 1.0


def test_a_sensitivity_target_keeps_that_share_of_pneumonia_films():
    labels = np.array([1] * 20 + [0] * 10)
    probs = np.concatenate([np.linspace(0.1, 1.0, 20), np.linspace(0.0, 0.5, 10)])
    threshold = sensitivity_threshold(labels, probs, 0.95)
    assert threshold == pytest.approx(probs[1])  # 20 positives, 5% may be missed: the lowest one, by hand
    assert recall_score(labels, (probs >= threshold).astype(int)) >= 0.95
    assert recall_score(labels, (probs >= threshold + 1e-6).astype(int)) < 0.95


def test_a_recalibrated_threshold_is_never_scored_on_the_films_it_was_fitted_on():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(labels * 0.4 + rng.normal(0.5, 0.15, 200), 0, 1)
    groups = np.array(["x"] * 200, dtype=object)
    found = travelling_thresholds(labels[:50], probs[:50] - 0.3, labels, probs, groups, recorded=0.3)
    recalibrated = found["populations"]["x"]["recalibrated"]
    assert recalibrated["n_fitted_on"] == 50 and recalibrated["n_scored"] == 150  # 200 films, by hand
    validation = found["populations"]["x"]["validation"]
    assert validation["threshold"] == 0.3
    assert validation["sensitivity"] == pytest.approx(recall_score(labels, (probs >= 0.3).astype(int)))
    shifted = found["populations"]["x"]["validation"]  # a threshold chosen on shifted validation does not travel
    assert shifted["specificity"] < recalibrated["specificity"]


def test_strata_are_reported_per_value():
    labels = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array([0.1, 0.2, 0.8, 0.9, 0.7, 0.3])
    strata = [(("view", "AP"),), (("view", "AP"),), (("view", "AP"),), (("view", "PA"),), (("view", "PA"),), ()]
    found = strata_metrics(labels, probs, strata, {"fixed": 0.5})
    assert (found["view"]["AP"]["n_normal"], found["view"]["AP"]["n_pneumonia"]) == (2, 1)
    assert found["view"]["AP"]["roc_auc"] == 1.0 and found["view"]["PA"]["roc_auc"] == pytest.approx(1.0)


@pytest.mark.shared_data
def test_the_nih_manifest_s_strata_and_a_manifest_of_datasets(tmp_path):
    index = discover(SHARED / "nih-adult" / "manifest.csv")
    views = [(s.label, dict(s.strata)["view"]) for s in index.samples]
    # the shared data's README, by hand: NORMAL 342 AP / 158 PA, PNEUMONIA 225 AP / 275 PA
    assert [views.count(k) for k in ((0, "AP"), (0, "PA"), (1, "AP"), (1, "PA"))] == [342, 158, 225, 275]
    assert {s.population for s in index.samples} == {"nih-adult"}
    both = tmp_path / "populations.csv"
    with open(both, "w", newline="") as f:
        csv.writer(f).writerows(
            [["population", "path", "split"], ["kermany", SHARED / "kermany224", ""],
             ["nih", SHARED / "nih-adult" / "manifest.csv", "test"]]
        )  # fmt: skip
    index = discover(both)
    counts = {(s.population, s.split) for s in index.samples}
    assert counts == {("kermany", "train"), ("kermany", "val"), ("nih", "test")}
    assert index.counts()["test"] == {"NORMAL": 500, "PNEUMONIA": 500}
    # patient ids scoped per population: NIH's 00001280_004.png is patient nih:1280, no Kermany film shares it
    ids = {s.patient_id for s in index.samples if s.path.endswith("00001280_004.png")}
    assert ids == {"nih:1280"}
    assert not any(s.population == "kermany" and s.patient_id.startswith("nih:") for s in index.samples if s.patient_id)


def test_evaluate_reports_each_population_and_stratum(phantom_data, tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from pneumocam.cli.app import app

    films = sorted((phantom_data.images / "test").rglob("*.png"))
    manifest = tmp_path / "films.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "population", "view"])
        for i, film in enumerate(films):
            writer.writerow([film, film.parent.name, "test", "a" if i % 2 else "b", "AP" if i % 3 else "PA"])
    result = CliRunner().invoke(
        app, ["evaluate", "--model", str(tiny_checkpoint / "model.pt"), "--data", str(manifest), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    (metrics,) = tmp_path.rglob("metrics.json")
    record = json.loads(metrics.read_text())
    rows = list(csv.DictReader(open(metrics.parent / "predictions.csv")))
    for name in ("a", "b"):
        member = [r for r in rows if (films.index(Path(r["path"])) % 2 == 1) == (name == "a")]
        assert record["by_population"][name]["n"] == len(member)
        y, p = [int(r["label"]) for r in member], [float(r["prob_pneumonia"]) for r in member]
        assert record["by_population"][name]["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    n_pa = sum(1 for i in range(len(films)) if i % 3 == 0)
    by_view = record["by_stratum"]["view"]
    assert by_view["PA"]["n"] == n_pa and by_view["AP"]["n"] == len(films) - n_pa


def test_leave_one_population_out_validation_trains_on_none_of_it(phantom_data, tmp_path):
    from pneumocam.evaluation.leakage import file_sha1
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    films = sorted((phantom_data.images / "train").rglob("*.png"))
    manifest = tmp_path / "two.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "population"])
        for i, film in enumerate(films):
            writer.writerow([film, film.parent.name, "train", "b" if i % 3 == 0 else "a"])
    config = TrainConfig(
        data=str(manifest), mode="frozen", weights="none", image_size=32, epochs=1, batch_size=16,
        val_source="population", val_population="b", use_cache=False,
    )  # fmt: skip
    _, meta = load_checkpoint(fit(config, runs_dir=tmp_path / "runs") / "model.pt", "cpu")
    held = [film for i, film in enumerate(films) if i % 3 == 0]
    plan = meta["data"]["validation"]
    assert (plan["source"], plan["population"], plan["n_val"]) == ("population", "b", len(held))
    assert plan["n_train"] == len(films) - len(held)
    trained = set(meta["seen"]["training"]["sha1"])
    assert not trained & {file_sha1(str(f)) for f in held} and len(trained) == len(films) - len(held)


def test_the_guard_s_share_per_group_and_the_report_s_table_per_population_and_view():
    from pneumocam.report.document import Banner, Table
    from pneumocam.report.populations import populations_section

    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    probs = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.4])  # kermany ranks perfectly, nih backwards
    groups = ["kermany"] * 4 + ["nih"] * 4
    flagged = [False, False, False, True, True, True, True, False]  # by hand: kermany 1 of 4, nih 3 of 4
    found = group_metrics(labels, probs, groups, {"threshold_youden_val": 0.5}, flagged)
    assert (found["kermany"]["share_flagged"], found["nih"]["share_flagged"]) == (0.25, 0.75)
    views = [(("view", v),) for v in ("AP", "PA", "AP", "PA", "AP", "AP", "PA", "PA")]
    results = {
        "metrics": {"threshold_youden_val": {"threshold": 0.5, "roc_auc": 0.9}, "threshold_0.5": {"threshold": 0.5}},
        "decision": {"key": "threshold_youden_val"},
        "populations": {
            "by_population": found,
            "by_stratum": strata_metrics(labels, probs, views, {"threshold_youden_val": 0.5}, flagged),
        },
    }
    section = populations_section(results)
    tables = [b for b in section.blocks if isinstance(b, Table)]
    assert [t.header[0] for t in tables] == ["population", "view"]
    nih = next(r for r in tables[0].rows if r[0] == "nih")
    # nih by hand: NORMAL p 0.7, 0.6 called PNEUMONIA at 0.5 (specificity 0), PNEUMONIA 0.3, 0.4 missed (sensitivity 0)
    assert nih == ["nih", "2 / 2", "0.000", "0.000", "0.000", nih[5], "75%"]
    banners = [b.text for b in section.blocks if isinstance(b, Banner)]
    assert len(banners) == 1 and "population nih (ROC-AUC 0.000)" in banners[0]
    assert populations_section({"metrics": results["metrics"], "populations": None}) is None
    relied = {"kermany": {"n_images": 4, "roc_auc": {"whole": 1.0, "lungs_removed_fill": 0.5, "only_lungs_fill": 1.0},
                          "verdict": "the decision rests on the lungs"},
              "nih": {"n_images": 4, "verdict": "undetermined: the group holds one class"}}  # fmt: skip
    tables = [
        b for b in populations_section(results | {"reliance": {"by_population": relied}}).blocks if isinstance(b, Table)
    ]
    assert tables[-1].header[0] == "population" and tables[-1].header[-1] == "verdict"
    assert tables[-1].rows == [
        ["kermany", "4", "1.000", "0.500", "1.000", "the decision rests on the lungs"],
        ["nih", "4", "n/a", "n/a", "n/a", "undetermined: the group holds one class"],
    ]


def test_travelling_thresholds_layout_and_each_rule_by_hand_per_population():
    """Two populations (names of mixed types, sorted as text), the validation predictions, a recorded threshold; each
    rule's decisions counted by hand with scikit-learn and the record's layout as the report and README tables read
    it. The recalibration sample depends on the seed."""
    from sklearn.metrics import confusion_matrix

    val_labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    val_probs = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    rng = np.random.default_rng(3)
    labels = np.tile([0, 1], 60)
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 120), 0, 1)
    groups = np.array(["b"] * 60 + [7] * 60, dtype=object)
    found = travelling_thresholds(val_labels, val_probs, labels, probs, groups, 0.5, n_recalibration=20, seed=1)
    assert set(found) == {"rules", "validation", "populations"}
    assert set(found["rules"]) == {"validation", "sensitivity_target", "recalibrated"}
    assert list(found["populations"]) == ["7", "b"]  # sorted as text, keys as text
    target = sensitivity_threshold(val_labels, val_probs)
    assert found["validation"]["validation"]["threshold"] == 0.5
    assert found["validation"]["sensitivity_target"]["threshold"] == target == pytest.approx(0.4)  # 4 of 4 >= 0.4

    def by_hand(y, p, t):
        tn, fp, fn, tp = confusion_matrix(y, (p >= t).astype(int), labels=[0, 1]).ravel()
        return {
            "threshold": t,
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "accuracy": (tp + tn) / len(y),
        }

    assert found["validation"]["validation"] == pytest.approx(by_hand(val_labels, val_probs, 0.5))
    for name, member in (("b", slice(0, 60)), ("7", slice(60, 120))):
        rules = found["populations"][name]
        assert set(rules) == {"validation", "sensitivity_target", "recalibrated"}
        assert rules["validation"] == pytest.approx(by_hand(labels[member], probs[member], 0.5))
        assert rules["sensitivity_target"] == pytest.approx(by_hand(labels[member], probs[member], target))
        assert rules["recalibrated"]["n_fitted_on"] == 20 and rules["recalibrated"]["n_scored"] == 40
    again = travelling_thresholds(val_labels, val_probs, labels, probs, groups, 0.5, n_recalibration=20, seed=1)
    assert again == found  # the seed decides the recalibration sample
    other_seed = travelling_thresholds(val_labels, val_probs, labels, probs, groups, 0.5, n_recalibration=20, seed=2)
    assert any(
        other_seed["populations"][n]["recalibrated"] != found["populations"][n]["recalibrated"] for n in ("b", "7")
    )


def test_the_recalibration_sample_takes_half_from_each_class_and_a_class_absent_gives_none():
    from pneumocam.evaluation.populations import at_threshold, recalibration_sample

    labels = np.array([0] * 30 + [1] * 8)
    picked = recalibration_sample(labels, 20, 0)
    assert (labels[picked] == 0).sum() == 10 and (labels[picked] == 1).sum() == 8  # 10 per class, 8 PNEUMONIA only
    assert len(set(picked.tolist())) == 18 and picked.tolist() == sorted(picked.tolist())
    normal_only = at_threshold(np.zeros(4, int), np.array([0.1, 0.6, 0.2, 0.3]), 0.5)
    assert normal_only == {"threshold": 0.5, "sensitivity": None, "specificity": 0.75, "accuracy": 0.75}
    empty = at_threshold(np.zeros(0, int), np.zeros(0), 0.5)
    assert empty["accuracy"] is None and empty["sensitivity"] is None and empty["specificity"] is None


def test_strata_carry_the_guard_s_share_per_value():
    labels = np.array([0, 1, 0, 1, 0, 1])
    probs = np.array([0.2, 0.8, 0.3, 0.7, 0.4, 0.9])
    strata = [(("view", "AP"),), (("view", "AP"),), (("view", "AP"),), (("view", "PA"),), (("view", "PA"),), ()]
    found = strata_metrics(labels, probs, strata, {"fixed": 0.5}, [True, False, False, True, True, False])
    assert found["view"]["AP"]["share_flagged"] == pytest.approx(1 / 3) and found["view"]["PA"]["share_flagged"] == 1.0


def test_the_recalibrated_threshold_is_youden_s_on_the_population_s_own_sample():
    """A population scored all above 0.5, NORMAL 0.80-0.84 and PNEUMONIA 0.90-0.94: Youden's J on any 2 + 2 of its
    films cuts at the lowest sampled PNEUMONIA score (by hand), so every other NORMAL film is called NORMAL; 0.5
    would call them all PNEUMONIA. No PNEUMONIA film: the sensitivity rule says why it cannot choose."""
    labels = np.array([0] * 5 + [1] * 5)
    probs = np.array([0.80, 0.81, 0.82, 0.83, 0.84, 0.90, 0.91, 0.92, 0.93, 0.94])
    groups = np.array(["x"] * 10, dtype=object)
    found = travelling_thresholds(labels, probs, labels, probs, groups, 0.5, n_recalibration=4, seed=2)
    recalibrated = found["populations"]["x"]["recalibrated"]
    assert 0.90 <= recalibrated["threshold"] <= 0.94 and recalibrated["specificity"] == 1.0
    assert found["populations"]["x"]["validation"]["specificity"] == 0.0  # 0.5 calls every film PNEUMONIA
    with pytest.raises(ValueError, match="no PNEUMONIA films: a sensitivity target is undefined"):
        sensitivity_threshold(np.zeros(3, int), np.array([0.1, 0.2, 0.3]))
