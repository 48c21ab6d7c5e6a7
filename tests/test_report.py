"""The report: sections from results.json alone, rendered again from a copied run folder, numbers = results.json."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumocam.cli.app import app
from pneumocam.report import render
from pneumocam.report.document import Banner, Figure, FigureRow, Section, Table, render_html, render_markdown
from pneumocam.report.findings import conclusion_section
from pneumocam.report.sections import build_sections, summary_section
from pneumocam.report.text import threshold_sentence


def small_results(**changes) -> dict:
    """A hand-written results.json: the fields the sections read, with round numbers."""
    metrics = {
        "threshold": 0.5,
        "n": 10,
        "accuracy": 0.8,
        "sensitivity": 0.75,
        "specificity": 5 / 6,
        "roc_auc": 0.9,
        "roc_auc_ci95": [0.7, 1.0],
        "roc_auc_ci_unit": "patient",
        "mean_loss": 0.4,
        "per_class": {
            "NORMAL": {"precision": 0.8, "recall": 5 / 6, "f1": 0.816, "support": 6},
            "PNEUMONIA": {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4},
        },
        "macro_avg": {"precision": 0.775, "recall": 0.79, "f1": 0.78, "support": 10},
        "weighted_avg": {"precision": 0.78, "recall": 0.8, "f1": 0.79, "support": 10},
        "confusion_matrix": {"labels": ["NORMAL", "PNEUMONIA"], "rows_true_cols_pred": [[5, 1], [1, 3]]},
    }
    results = {
        "provenance": {
            "data": "/d",
            "eval_split": "test",
            "eval_fingerprint": "abc",
            "checkpoint": "m.pt",
            "seed": 0,
            "image_size": 64,
            "weights": {"source": "none", "description": "RANDOM"},
            "versions": {"torch": "2"},
            "command": "pneumocam run",
            "synthetic_data": True,
            "training_data": None,
        },
        "config": {"train": {}},
        "metrics": {"threshold_0.5": metrics},
        "thresholds": {"threshold_0.5": "fixed 0.5"},
        "leakage": {
            "n_images_evaluated": 10,
            "n_images_seen_in_training": 0,
            "n_images_seen_in_selection": 0,
            "n_patients_shared_with_training": 0,
            "n_patients_shared_with_selection": 0,
            "examples": [],
            "recorded": True,
        },
        "empty_maps": {"n": 0, "by_class": {"NORMAL": 0, "PNEUMONIA": 0}},
        "training": None,
        "statistics": {},
        "statistics_notes": {},
        "ground_truth": {},
        "attention": {},
        "trust": None,
        "skipped": [],
        "cam": {
            "method": "gradcam",
            "layer": "layer4",
            "target": "pred",
            "map_shape": [2, 2],
            "normalised_by_library": False,
        },
    }
    results.update(changes)
    return results


def text_of(section: Section) -> str:
    return " ".join(
        b.text
        if isinstance(b, Banner)
        else " ".join(" ".join(map(str, r)) for r in b.rows)
        if isinstance(b, Table)
        else str(b)
        for b in section.blocks
    )


def test_shortcut_marker_map_is_flagged_in_the_conclusion():
    results = small_results(
        ground_truth={"marker": {"mean_mass_share": 0.30, "mean_area_share": 0.005, "images_with_mask": 5}}
    )
    text = text_of(conclusion_section(results))
    assert "the model is using the marker" in text and "30.0%" in text and "60.0 times" in text


def test_summary_opens_with_warnings_and_the_headline_numbers():
    leaked = small_results()
    leaked["leakage"] |= {"n_images_seen_in_training": 3, "examples": ["/d/a.png"]}
    summary = summary_section(leaked)
    banners = [b for b in summary.blocks if isinstance(b, Banner)]
    assert [b.level for b in banners] == ["danger", "danger", "danger"]  # synthetic, random init, leakage
    assert "LEAKAGE" in banners[2].text and "/d/a.png" in banners[2].text
    text = text_of(summary)
    assert "0.900 (95% CI 0.700-1.000, by patient)" in text and "0.800 / 0.750 / 0.833" in text
    clean = summary_section(
        small_results(
            provenance=small_results()["provenance"] | {"synthetic_data": False, "weights": {"source": "imagenet"}}
        )
    )
    assert [b.level for b in clean.blocks if isinstance(b, Banner)] == ["info"]


def test_threshold_sentence_is_true_in_each_case():
    base = small_results()
    assert threshold_sentence(base).startswith("One threshold: 0.5")
    with_val = small_results(metrics=base["metrics"] | {"threshold_youden_val": base["metrics"]["threshold_0.5"]})
    assert "never chosen on the evaluated split" in threshold_sentence(with_val)
    with_val["leakage"] = base["leakage"] | {"n_images_seen_in_selection": 4}
    assert "WAS chosen on evaluated images" in threshold_sentence(with_val)
    with_val["leakage"] = {"recorded": False}
    assert "unknown" in threshold_sentence(with_val)


def test_sections_skip_what_the_run_did_not_do():
    titles = [s.title for s in build_sections(small_results())]
    assert titles[0] == "Summary" and "Training" not in titles and "Is the explanation trustworthy?" not in titles
    assert titles[-1] == "Conclusion and its limits"


def test_documents_have_a_linked_contents_and_side_by_side_figures(tmp_path):
    from PIL import Image

    figures = []
    for name in ("a", "b"):
        Image.new("L", (4, 4)).save(tmp_path / f"{name}.png")
        figures.append(Figure(tmp_path / f"{name}.png", f"figure {name}"))
    sections = [Section("First part").add("text <b>"), Section("Second, part").add(FigureRow(figures))]
    html = render_html("t", sections)
    assert "<a href='#first-part'>First part</a>" in html and "<h2 id='second-part'>" in html
    assert (
        "<div class='row'><figure>" in html and html.count("data:image/png;base64,") == 2 and "text &lt;b&gt;" in html
    )
    md = render_markdown("t", sections, tmp_path / "sub")
    assert "1. [First part](#first-part)" in md and "![figure a](../a.png)" in md


def md_table(md: str, caption: str) -> list[dict]:
    lines = md.splitlines()
    start = lines.index(f"**{caption}**") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def check_numbers_equal_results(md: str, results: dict) -> None:
    for name, m in results["metrics"].items():
        rows = {r["class"]: r for r in md_table(md, f"{name} = {m['threshold']:.3f}")}
        for cls in ("NORMAL", "PNEUMONIA"):
            for key in ("precision", "recall", "f1"):
                assert rows[cls][key] == f"{m['per_class'][cls][key]:.3f}", (name, cls, key)
            assert rows[cls]["support"] == str(m["per_class"][cls]["support"])
        assert f"{name}: accuracy {m['accuracy']:.3f}" in md and f"ROC-AUC {m['roc_auc']:.3f}" in md
        low, high = m["roc_auc_ci95"]
        assert f"CI {low:.3f}-{high:.3f}, resampling by patient" in md
    stats_rows = {
        r["score"]: r
        for r in md_table(md, "Random-sample tests (the original protocol), every image, and resampled draws")
    }
    assert set(stats_rows) == set(results["statistics"])
    for score, entry in results["statistics"].items():
        sample, row = entry["sample"], stats_rows[score]
        assert row["Welch p"] == f"{sample['welch']['p']:.3e}" and row["Student p"] == f"{sample['student']['p']:.3e}"
        assert row["Cohen's d"].startswith(f"{sample['cohens_d']:.2f} ")
        assert (
            row["mean N / P (sample)"]
            == f"{sample['groups']['NORMAL']['mean']:.4g} / {sample['groups']['PNEUMONIA']['mean']:.4g}"
        )


def test_report_numbers_equal_results_json(tiny_run):
    check_numbers_equal_results(
        (tiny_run / "report.md").read_text(), json.loads((tiny_run / "results.json").read_text())
    )


def test_report_command_renders_a_copied_run_folder_alone(tiny_run, tmp_path):
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("train", "phantoms"))  # no model, no data
    for name in ("report.html", "report.md", "figures/roc.png", "figures/training.png", "figures/scores_mean_raw.png"):
        (copy / name).unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    md = (copy / "report.md").read_text()
    check_numbers_equal_results(md, json.loads((copy / "results.json").read_text()))
    for name in ("roc", "training", "scores_mean_raw"):
        assert (copy / "figures" / f"{name}.png").is_file(), name  # remade from the run's files
    assert md == (tiny_run / "report.md").read_text()  # the same report as the run rendered
    other = CliRunner().invoke(app, ["report", str(copy), "--out", str(tmp_path / "out")])
    assert other.exit_code == 0 and (tmp_path / "out" / "report.html").is_file()
    missing = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 2 and "no results.json" in missing.output


def test_render_refuses_a_folder_without_results(tmp_path):
    from pneumocam.core.errors import PneumocamError

    with pytest.raises(PneumocamError, match="not a finished"):
        render(tmp_path)


def test_calibration_and_operating_points_are_reported():
    from pneumocam.report.sections import calibration_sentence, operating_points_sentence

    results = small_results()
    assert "records no calibration" in calibration_sentence(results)
    results["calibration"] = {
        "method": "temperature",
        "temperature": 1.7,
        "ece_before": 0.12,
        "ece_after": 0.02,
        "fitted_on": "validation split (the one that selected the epoch)",
    }
    results["metrics"]["threshold_0.5"]["ece"] = 0.031
    text = calibration_sentence(results)
    assert "T = 1.700" in text and "ECE 0.120 before, 0.020 after" in text and "evaluated split: 0.031" in text
    m = {
        "sensitivity_at_specificity_0.85": {"value": 0.9, "ci95": [0.8, 0.95]},
        "specificity_at_sensitivity_0.95": {"value": 0.7, "ci95": None},
    }
    assert operating_points_sentence(m) == (
        "Operating points (any threshold): sensitivity at specificity >= 0.85: 0.900 "
        "(95% CI 0.800-0.950); specificity at sensitivity >= 0.95: 0.700."
    )


def test_the_weights_line_says_what_a_model_pt_started_from(tmp_path):
    from pneumocam.report.sections import provenance_section

    results = {
        "provenance": {
            "data": "D", "eval_split": "heldout", "eval_fingerprint": "f", "seed": 0, "image_size": 224,
            "checkpoint": "C", "command": "pneumocam run", "versions": {"torch": "2.14.1"},
            "weights": {"source": "file", "description": "local file model.pt", "from_random": True,
                        "notes": ["a pneumocam checkpoint, itself trained from: RANDOM INITIALISATION"]},
        }
    }  # fmt: skip
    text = render_markdown("r", [provenance_section(results)], tmp_path)
    assert "Weights: local file model.pt; a pneumocam checkpoint, itself trained from: RANDOM INITIALISATION." in text


def test_the_p_histogram_leaves_out_draws_without_a_p(tmp_path):
    """Draws whose groups are both constant have no t-test p (saved as null): the figure counts them, not crashes."""
    from pneumocam.report.figures import p_histogram, p_histogram_title

    draws = [0.01, None, 0.5, float("nan"), 0.03]
    path = p_histogram(tmp_path / "p.png", draws, 0.05, "mean_maxnorm", 5)
    assert path.is_file() and path.stat().st_size > 0
    defined, title = p_histogram_title(draws, 0.05, "mean_maxnorm", 5)
    assert defined.tolist() == [0.01, 0.5, 0.03]  # hand count: two draws without a p, 2 of the other 3 below alpha
    assert "over 5 random 5 vs 5 draws; 2 draws without a p" in title and "67% of the draws with a p" in title


def test_a_comparison_without_a_p_or_an_effect_size_is_reported_as_n_a(tmp_path):
    """Both classes constant and equal: scipy gives no t or p, the g interval has no ends (null in stats.json). The
    score figure, the conclusion and the stats summary say n/a instead of failing (a run whose model scored every
    film alike crashed here)."""
    from pneumocam.analysis.stats import compare_groups, summary_text
    from pneumocam.report.figures import score_comparison

    normal, pneumonia = np.full(5, 0.5), np.full(5, 0.5)
    sample = json.loads(json.dumps(compare_groups(normal, pneumonia, seed=0), allow_nan=True).replace("NaN", "null"))
    assert sample["welch"]["p"] is None and sample["hedges_g_ci"] == [None, None]  # what the checks below are about
    assert score_comparison(tmp_path / "s.png", normal, pneumonia, "mean_maxnorm", sample).stat().st_size > 0
    results = small_results()
    results["statistics"]["mean_maxnorm"] = {"sample": sample}
    text = text_of(conclusion_section(results))
    assert "no differently from NORMAL (Cohen's d 0.00" in text and "(p = n/a)" in text
    summary = summary_text({"sample": sample}, "mean_maxnorm")
    assert "t = n/a" in summary and "p = n/a" in summary and "95% CI [n/a, n/a]" in summary


def test_maps_of_a_model_trained_against_gradcam_are_marked_as_not_independent_evidence(tiny_run):
    from pneumocam.report.findings import attention_section

    results = json.loads((tiny_run / "results.json").read_text())
    assert results["trained_against"] is None  # the tiny run's model had no attention penalty
    plain = attention_section(results)
    results["trained_against"] = {"explanation": "gradcam", "weight": 1.0}
    marked = attention_section(results)
    assert "Trained against" not in text_of(plain) and "not independent evidence" in text_of(marked)


def test_the_report_says_what_its_numbers_estimate(tiny_run):
    from pneumocam.report.sections import scope_sentence

    same = {"eval_split": "heldout", "data": "/d/k", "training_data": {"root": "/d/k"}}
    assert "held out of the training collection" in scope_sentence(same)
    assert "not on other hospitals or years" in scope_sentence(same) and "--data OTHER" in scope_sentence(same)
    other = {"eval_split": "test", "data": "/d/nih", "training_data": {"root": "/d/k"}}
    assert "not the training data (/d/k)" in scope_sentence(other) and "external check" in scope_sentence(other)
    assert "optimistic" in scope_sentence(same | {"eval_split": "val"})
    family = {"source": "family", "family": "IM", "n_val": 886}
    said = scope_sentence(same | {"training_data": {"root": "/d/k", "validation": family}})
    assert "a validation that sees shift: every NORMAL film of the acquisition family IM held out whole" in said
    carved = {"source": "carved", "n_val": 1000, "n_val_used": 600}
    said = scope_sentence(same | {"training_data": {"root": "/d/k", "validation": carved}})
    assert "chosen on 600 validation films of random patients" in said and "--val-source family" in said
    assert "What these numbers mean" in (tiny_run / "report.md").read_text()
