"""render(run_dir): report.html and report.md from a finished run folder alone (no model, no data).

Reads results.json, stats.json, importance.csv and heatmaps.npz; uses the run's figures where they exist and
remakes the missing ones from those files (the heatmap grid alone needs the films, so it is only reused).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from pneumocam.core.errors import PneumocamError
from pneumocam.core.outputs import atomic_write_text
from pneumocam.core.runfiles import (
    RunFileError,
    read_heatmaps_checked,
    read_json,
    read_results,
    read_table,
    resolves_inside,
)
from pneumocam.core.schema import FIGURES, FIXED_KEY, HEATMAPS, IMPORTANCE, REPORT_HTML, REPORT_MD, RESULTS, STATS
from pneumocam.report import figures as fg
from pneumocam.report.document import render_html, render_markdown
from pneumocam.report.sections import build_sections
from pneumocam.report.text import ORIGINAL_SCORE, headline_threshold


def _finite_by_class(run_dir: Path, score: str, include_ood: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A score's finite values per class, in importance.csv's row order (the order the statistics drew from);
    without include_ood, the rows the guard flagged are left out as the statistics left them out."""
    rows = [
        (r["label"], float(r[score]))
        for r in read_table(run_dir / IMPORTANCE)
        if r.get(score) not in (None, "") and (include_ood or r.get("in_distribution", "1") != "0")
    ]
    values = {c: np.array([v for label, v in rows if label == c and np.isfinite(v)]) for c in ("NORMAL", "PNEUMONIA")}
    return values["NORMAL"], values["PNEUMONIA"]


def make_figures(run_dir: Path, results: dict, out_dir: Path) -> dict[str, Path]:
    """{figure key: PNG path}: the run's own figure when present, else one remade into out_dir/figures."""
    found: dict[str, Path] = {}

    def figure(key: str, draw) -> None:
        existing = run_dir / FIGURES / f"{key}.png"
        if existing.is_file() and not existing.is_symlink() and resolves_inside(existing, run_dir):
            found[key] = existing  # never a link, nor a file that lies outside the run: it would be embedded
        elif draw is not None:
            found[key] = draw(out_dir / FIGURES / f"{key}.png")

    figure("heatmaps", None)
    figure("ood", None)  # drawn from the films at run time
    m05 = results["metrics"][FIXED_KEY]  # the ROC curve's AUC: threshold-free
    decided = results["metrics"][headline_threshold(results)]
    if (run_dir / HEATMAPS).is_file():
        maps = read_heatmaps_checked(run_dir / HEATMAPS, ("labels", "probs"))
        figure(
            "roc",
            lambda p: fg.roc_figure(
                p, maps["labels"], maps["probs"].astype(np.float64), m05["roc_auc"], m05["roc_auc_ci95"]
            ),
        )
        temperature = float((results.get("calibration") or {}).get("temperature") or 1.0)
        if temperature != 1.0:
            after = np.clip(maps["probs"].astype(np.float64), 1e-12, 1 - 1e-12)
            before = expit(logit(after) * temperature)  # the logit before the head was divided by T
            figure("calibration", lambda p: fg.reliability_figure(p, maps["labels"], before, after))
    figure(
        "confusion",
        lambda p: fg.confusion_figure(p, decided["confusion_matrix"]["rows_true_cols_pred"], decided["threshold"]),
    )
    if results.get("training"):
        figure("training", lambda p: fg.training_curves(p, results["training"]["history"]))
    if results.get("attention"):
        att = results["attention"]
        figure("regions", lambda p: fg.region_bars(p, att["mean_share_by_class"], att["mean_area_by_class"]))
    if results.get("trust"):
        figure("trust", lambda p: fg.trust_figure(p, results["trust"]))
    statistics = read_json(run_dir / STATS) if (run_dir / STATS).is_file() else {}
    for name, entry in statistics.items():
        if "sample" not in entry:
            continue
        draw = entry["sample"]["draw"]

        def scores(path, name=name, entry=entry, draw=draw):
            normal, pneumonia = _finite_by_class(run_dir, name, results["config"].get("include_ood", True))
            return fg.score_comparison(
                path, normal[draw["indices"]["NORMAL"]], pneumonia[draw["indices"]["PNEUMONIA"]], name, entry["sample"]
            )

        figure(f"scores_{name}", scores if (run_dir / IMPORTANCE).is_file() else None)
        if entry.get("resampled") and "p_values" in entry["resampled"] and name in (ORIGINAL_SCORE, "mean_raw"):
            r = entry["resampled"]
            figure(
                f"pvalues_{name}",
                lambda p, r=r, name=name: fg.p_histogram(p, r["p_values"], r["alpha"], name, r["n_per_class"]),
            )
    return found


def render(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md for a run folder into out (default: the run folder); return their paths.

    The run folder is read as hostile (core.runfiles: sizes, depth, types checked first; figures that are links or
    lie outside the run are never embedded). `out` must be a folder that holds no report yet: a report is never
    written over a file the user has there."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULTS).is_file():
        raise PneumocamError(f"{run_dir} holds no results.json: not a finished `pneumocam run` folder")
    out_dir = Path(out) if out is not None else run_dir
    if out is not None:
        refuse_to_overwrite(out_dir, run_dir)
    results = read_results(run_dir / RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        sections = build_sections(results, make_figures(run_dir, results, out_dir))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RunFileError(
            f"{RESULTS} lacks or mistypes what the report reads ({type(exc).__name__}: {str(exc)[:80]}): was it "
            "written by another pneumocam, or edited?"
        ) from None
    title = "pneumocam report" + (" (SYNTHETIC DEMO DATA)" if results["provenance"].get("synthetic_data") else "")
    html_path = atomic_write_text(out_dir / REPORT_HTML, render_html(title, sections))
    md_path = atomic_write_text(out_dir / REPORT_MD, render_markdown(title, sections, out_dir))
    return html_path, md_path


def refuse_to_overwrite(out_dir: Path, run_dir: Path) -> None:
    """`report --out`: a folder (made when missing) holding no report.html, report.md or figures of its own."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PneumocamError(f"--out {out_dir} is a file: give a folder (it is made when missing)")
    if out_dir.resolve() == run_dir.resolve():
        return  # the run's own report, remade: what `report` is for
    taken = [name for name in (REPORT_HTML, REPORT_MD, FIGURES) if (out_dir / name).exists()]
    if taken:
        raise PneumocamError(
            f"--out {out_dir} already holds {', '.join(taken)}: nothing is written over your files; give a new folder"
        )
