"""A measured `pneumocam run` as a result record (benchmarks/results/NAME.json): the figures the README quotes from
a run folder, with the run's own command, and the wall time and peak memory when `/usr/bin/time -v` logged them.

    python benchmarks/run_record.py RUN_FOLDER --name scratch-bf16 [--time-log run.err | --wall-s S] [--note "..."]

The figures are read from the run's files (results.json, train/train_summary.json); nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402


def time_log(path: Path) -> dict:
    """Wall time (s) and peak RSS (GB) from GNU time -v's report."""
    text = path.read_text(errors="replace")
    out = {}
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if wall:
        parts = [float(p) for p in wall.group(1).split(":")]
        out["wall_s"] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if rss:
        out["peak_rss_gb"] = int(rss.group(1)) / 1024**2
    return out


def run_figures(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    metrics = results["metrics"]
    key = "threshold_youden_val" if "threshold_youden_val" in metrics else "threshold_0.5"
    chosen, half = metrics[key], metrics["threshold_0.5"]
    summary_path = run / "train" / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    history = summary.get("history") or []
    calibration = results.get("calibration") or {}
    leakage = results.get("leakage") or {}
    return {
        "eval_split": results["provenance"]["eval_split"],
        "n_evaluated": half["n"],
        "n_patients": half.get("n_patients"),
        "roc_auc": half["roc_auc"],
        "roc_auc_ci95": half.get("roc_auc_ci95"),
        "roc_auc_ci_unit": half.get("roc_auc_ci_unit"),
        "threshold": chosen["threshold"],
        "threshold_key": key,
        "accuracy_at_threshold": chosen["accuracy"],
        "sensitivity_at_threshold": chosen.get("sensitivity"),
        "specificity_at_threshold": chosen.get("specificity"),
        "accuracy_at_0.5": half["accuracy"],
        "sensitivity_at_specificity_0.85": half.get("sensitivity_at_specificity_0.85"),
        "specificity_at_sensitivity_0.95": half.get("specificity_at_sensitivity_0.95"),
        "ece": half.get("ece"),
        "temperature": calibration.get("temperature"),
        "calibration": calibration.get("method"),
        "leakage_images": leakage.get("n_images_seen_in_training", 0) + leakage.get("n_images_seen_in_selection", 0),
        "leakage_patients": leakage.get("n_patients_shared_with_training", 0)
        + leakage.get("n_patients_shared_with_selection", 0),
        "guard_flagged_share": (results.get("guard") or {}).get("share_flagged"),
        "best_epoch": summary.get("best_epoch"),
        "val_auc_per_epoch": [r.get("val_auc") for r in history],
        "epoch_seconds": [r.get("seconds") for r in history],
        "image_size_per_epoch": [r.get("image_size") for r in history],
        "precision": results["provenance"].get("precision"),
        "training_precision": results["provenance"].get("training_precision"),
        "weights": (results["provenance"].get("weights") or {}).get("description"),
        "run_command": results["provenance"].get("command"),
        "recipe": (results.get("config") or {}).get("train", {}).get("recipe"),
        "attention": attention_figures(results.get("attention") or {}),
        "reliance": reliance_figures(results.get("reliance") or {}),
    }


def reliance_figures(reliance: dict) -> dict:
    """The decision-reliance check: each variant's ROC-AUC with its interval, and the verdict."""
    if not reliance.get("variants"):
        return {}
    return {
        "roc_auc": {name: v.get("roc_auc") for name, v in reliance["variants"].items()},
        "roc_auc_ci95": {name: v.get("roc_auc_ci95") for name, v in reliance["variants"].items()},
        "verdict": reliance.get("verdict"),
    }


def attention_figures(attention: dict) -> dict:
    """Per class: the maps' lung ratio (lung share / lung area share), share outside the body, pointing game."""
    if not attention.get("mean_ratio_by_class"):
        return {}
    return {
        name: {
            "lung_ratio": attention["mean_ratio_by_class"][name]["lungs"],
            "share_outside_body": attention["mean_share_by_class"][name]["outside_body"],
            "pointing_lungs": (attention.get("pointing_lungs_by_class") or {}).get(name),
        }
        for name in attention["mean_ratio_by_class"]
    } | {"lung_sources": attention.get("lung_sources")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--time-log", type=Path, default=None)
    parser.add_argument("--wall-s", type=float, default=None, help="The run's wall time, where no time log was kept.")
    parser.add_argument("--note", default="")
    parser.add_argument("--record-dir", type=Path, default=None)
    args = parser.parse_args()
    figures = run_figures(args.run)
    if args.time_log:
        figures |= time_log(args.time_log)
    if args.wall_s is not None:
        figures["wall_s"] = args.wall_s
    print(json.dumps(figures, indent=2))
    print(f"record: {write_record(args.name, figures, note=args.note, out=args.record_dir)}")


if __name__ == "__main__":
    main()
