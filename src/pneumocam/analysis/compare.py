"""Two runs on the same images, compared: did a change (a recipe, --focus, a penalty) move accuracy or attention?

Images are paired by path. Classification: ROC-AUC and accuracy (each run at its own recorded threshold) with the
paired difference B minus A and its percentile bootstrap CI, resampling patients when known (the same draws for
both runs). Attention: per class, the mean of each region measure in both runs and a Wilcoxon signed-rank test
of the paired per-image differences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon
from sklearn.metrics import roc_auc_score

from pneumocam import CLASS_NAMES
from pneumocam.core.defaults import PAIRED_RESAMPLES, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.runfiles import read_results, read_table
from pneumocam.core.schema import IMPORTANCE, PREDICTIONS, RESULTS, decision_key
from pneumocam.data import patient_id_from_name
from pneumocam.evaluation.metrics import cluster_members

REGION_MEASURES = ("share_lungs", "share_outside_body", "ratio_lungs", "ratio_outside_body", "pointing_lungs")


def _rows(run: Path, name: str) -> dict[str, dict]:
    path = run / name
    if not path.is_file():
        raise PneumocamError(f"{run} has no {name}: compare needs two finished `pneumocam run` folders")
    return {r.get("path"): r for r in read_table(path)}  # core.runfiles: size-capped, refused with its reason


def _threshold(run: Path) -> tuple[str, float]:
    metrics = read_results(run / RESULTS)["metrics"]
    key = decision_key(metrics)
    return key, float(metrics[key]["threshold"])


def paired_differences(
    labels,
    probs_a,
    probs_b,
    threshold_a: float,
    threshold_b: float,
    groups=None,
    n_resamples: int = PAIRED_RESAMPLES,
    seed: int = SEED,
) -> dict:
    """AUC and accuracy of A and B on the same images, B minus A, with percentile bootstrap CIs from shared draws."""

    labels, probs_a, probs_b = np.asarray(labels), np.asarray(probs_a), np.asarray(probs_b)

    def figures(idx):
        y = labels[idx]
        auc_a, auc_b = roc_auc_score(y, probs_a[idx]), roc_auc_score(y, probs_b[idx])
        acc_a, acc_b = np.mean((probs_a[idx] >= threshold_a) == y), np.mean((probs_b[idx] >= threshold_b) == y)
        return auc_a, auc_b, acc_a, acc_b

    members = cluster_members(np.asarray(groups)) if groups is not None else None
    n = len(members) if members is not None else len(labels)
    rng, draws = np.random.default_rng(seed), []
    while len(draws) < n_resamples:
        draw = rng.integers(0, n, n)
        idx = np.concatenate([members[i] for i in draw]) if members is not None else draw
        if labels[idx].min() != labels[idx].max():
            a_auc, b_auc, a_acc, b_acc = figures(idx)
            draws.append((b_auc - a_auc, b_acc - a_acc))
    draws = np.array(draws)
    auc_a, auc_b, acc_a, acc_b = figures(np.arange(len(labels)))
    ci = np.quantile(draws, [0.025, 0.975], axis=0)
    return {
        "n_images": int(len(labels)),
        "resampled_unit": "patient" if groups is not None else "image",
        "n_resamples": n_resamples,
        "seed": seed,
        "roc_auc": {
            "A": float(auc_a),
            "B": float(auc_b),
            "difference": float(auc_b - auc_a),
            "ci95": ci[:, 0].tolist(),
        },
        "accuracy": {
            "A": float(acc_a),
            "B": float(acc_b),
            "difference": float(acc_b - acc_a),
            "ci95": ci[:, 1].tolist(),
            "thresholds": {"A": threshold_a, "B": threshold_b},
        },
    }


def attention_differences(labels, columns_a: dict[str, np.ndarray], columns_b: dict[str, np.ndarray]) -> dict:
    """Per region measure and class: means of A and B over the images where both have a value, and Wilcoxon's
    signed-rank test of the paired differences (None when there are fewer than 2 pairs or all differences are 0)."""

    labels = np.asarray(labels)
    out = {}
    for name in columns_a:
        out[name] = {}
        for c, cls in enumerate(CLASS_NAMES):
            a, b = columns_a[name][labels == c], columns_b[name][labels == c]
            both = np.isfinite(a) & np.isfinite(b)
            a, b = a[both], b[both]
            p = float(wilcoxon(b, a).pvalue) if len(a) >= 2 and np.any(a != b) else None
            out[name][cls] = {
                "n": int(len(a)),
                "A": float(a.mean()) if len(a) else None,
                "B": float(b.mean()) if len(b) else None,
                "wilcoxon_p": p,
            }
    return out


def recorded_patient(row: dict, path: str) -> str | None:
    """The patient id the run recorded for a film (from its manifest, shard or file name); runs written before
    predictions.csv carried it fall back to the file name."""
    if "patient_id" in row:
        return row["patient_id"] or None

    return patient_id_from_name(Path(path).name)


def compare_runs(run_a: str | Path, run_b: str | Path, n_resamples: int = PAIRED_RESAMPLES, seed: int = SEED) -> dict:
    """compare.json's content for two run folders evaluated on (at least partly) the same images."""
    run_a, run_b = Path(run_a), Path(run_b)
    pred_a, pred_b = _rows(run_a, PREDICTIONS), _rows(run_b, PREDICTIONS)
    common = sorted(set(pred_a) & set(pred_b))
    if len(common) < 2:
        raise PneumocamError(
            f"{run_a} and {run_b} share {len(common)} evaluated images: compare runs on the same split"
        )
    labels = np.array([int(pred_a[p]["label"]) for p in common])
    if any(int(pred_b[p]["label"]) != label for p, label in zip(common, labels)):
        raise PneumocamError("the two runs disagree on some labels of the same files: not the same data")
    if labels.min() == labels.max():
        raise PneumocamError("the shared images hold one class only: AUC is undefined")
    ids = [recorded_patient(pred_a[p], p) for p in common]
    groups = np.array([i if i is not None else f"file:{p}" for i, p in zip(ids, common)]) if any(ids) else None
    (key_a, t_a), (key_b, t_b) = _threshold(run_a), _threshold(run_b)
    result = {
        "runs": {"A": str(run_a), "B": str(run_b)},
        "only_in_A": len(pred_a) - len(common),
        "only_in_B": len(pred_b) - len(common),
        "thresholds_used": {"A": key_a, "B": key_b},
    }
    result["classification"] = paired_differences(
        labels,
        [float(pred_a[p]["prob_pneumonia"]) for p in common],
        [float(pred_b[p]["prob_pneumonia"]) for p in common],
        t_a,
        t_b,
        groups,
        n_resamples,
        seed,
    )
    imp_a, imp_b = _rows(run_a, IMPORTANCE), _rows(run_b, IMPORTANCE)
    measures = [m for m in REGION_MEASURES if m in next(iter(imp_a.values())) and m in next(iter(imp_b.values()))]
    columns = [{m: np.array([float(imp[p][m]) for p in common]) for m in measures} for imp in (imp_a, imp_b)]
    result["attention"] = attention_differences(labels, *columns)
    result["trained_against"] = {
        side: _results(run).get("trained_against") for side, run in (("A", run_a), ("B", run_b))
    }
    result["reliance"] = reliance_side_by_side(_results(run_a).get("reliance"), _results(run_b).get("reliance"))
    return result


def _results(run: Path) -> dict:
    path = run / RESULTS
    return read_results(path) if path.is_file() else {}


def reliance_side_by_side(a: dict | None, b: dict | None) -> dict | None:
    """Each run's decision-reliance check (its own evaluated films), side by side: ROC-AUC per variant and the
    verdicts. None unless both runs measured it."""
    if not a or not b:
        return None
    return {
        "roc_auc": {
            name: {"A": a["variants"][name]["roc_auc"], "B": b["variants"][name]["roc_auc"]} for name in a["variants"]
        },
        "verdict": {"A": a["verdict"], "B": b["verdict"]},
    }
