"""Several model.pt evaluated together (a seed ensemble): the mean of their calibrated probabilities.

Each member reads the films its own way (its --focus, its temperature), so members trained differently combine.
The ensemble has no validation split of its own, so it decides at 0.5 only; its leakage check covers every
member's training and selection films at once; it has no domain-shift guard of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from pneumocam.core.defaults import BATCH_SIZE, BOOTSTRAP_RESAMPLES, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.messages import warn
from pneumocam.core.outputs import write_csv, write_json, write_skipped
from pneumocam.core.schema import FIXED_KEY, FIXED_RULE, FIXED_THRESHOLD, LEAKAGE, METRICS, PREDICTIONS, SKIPPED
from pneumocam.data import LoadedImages, discover, load_images
from pneumocam.evaluation.evaluate import Predictions, metrics_at_thresholds, metrics_record, predict
from pneumocam.evaluation.leakage import check_leakage, enforce
from pneumocam.evaluation.metrics import operating_points
from pneumocam.model.inputs import ModelInputs

COMBINATION = "mean of the members' calibrated probabilities"


def ensemble_predictions(
    members: list[tuple[nn.Module, dict]], loaded: LoadedImages, batch_size: int = BATCH_SIZE, device="cpu"
) -> tuple[Predictions, np.ndarray]:
    """(the ensemble's Predictions, each member's probabilities (M, N) in the same path order)."""
    each = [
        predict(model, ModelInputs.of_checkpoint(meta).inputs(loaded), batch_size, device, description=f"Member {i}")
        for i, (model, meta) in enumerate(members, start=1)
    ]
    probs = np.stack([p.probs for p in each])
    first = each[0]
    return Predictions(first.paths, first.labels, probs.mean(axis=0), first.patients), probs


def member_size(members: list[tuple[nn.Module, dict]]) -> int:
    """The one input size every member reads; members of different sizes cannot share the films."""
    sizes = {ModelInputs.of_checkpoint(meta).image_size for _, meta in members}
    if len(sizes) > 1:
        raise PneumocamError(f"ensemble members read different image sizes ({sorted(sizes)}): use models of one size")
    return sizes.pop()


def union_of_seen(metas: list[dict]) -> dict:
    """A metadata whose record of seen films is every member's together (none when any member has no record)."""
    seen = [meta.get("seen") for meta in metas]
    if not all(seen):
        return {}
    merged = {
        part: {key: sorted({v for s in seen for v in s[part][key]}) for key in ("sha1", "patients")}
        for part in ("training", "selection")
    }
    return {"seen": merged}


def evaluate_ensemble(
    members: list[tuple[nn.Module, dict]],
    checkpoints: list[str],
    data_root: str,
    split: str,
    out_dir,
    batch_size: int = BATCH_SIZE,
    device="cpu",
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
    strict: bool = False,
    precision: dict | None = None,
) -> dict:
    """Like evaluate_split for several models: metrics.json (with an "ensemble" block: each member's ROC-AUC on
    the same films), predictions.csv (the mean), predictions_members.csv (each member), skipped.csv, leakage.csv."""
    loaded = load_images(discover(data_root).split(split), member_size(members), description=f"Reading {split}")
    leakage = check_leakage(union_of_seen([meta for _, meta in members]), loaded.samples)
    enforce(leakage, strict, warn)
    predictions, member_probs = ensemble_predictions(members, loaded, batch_size, device)
    metrics = metrics_at_thresholds(predictions, {FIXED_KEY: FIXED_THRESHOLD}, bootstrap_resamples, seed)
    described = {FIXED_KEY: f"{FIXED_RULE} (an ensemble has no validation split of its own)"}
    result = metrics_record(split, data_root, loaded, None, {}, seed, described, metrics, leakage)
    result["ensemble"] = {
        "combination": COMBINATION,
        "members": [
            {
                "checkpoint": checkpoint,
                "weights": meta.get("weights"),
                "roc_auc": operating_points(predictions.labels, probs)["roc_auc"],
            }
            for checkpoint, (_, meta), probs in zip(checkpoints, members, member_probs)
        ],
    }
    result["precision"] = precision
    out_dir = Path(out_dir)
    write_json(out_dir / METRICS, result)
    write_csv(out_dir / PREDICTIONS, Predictions.HEADER, predictions.rows(FIXED_THRESHOLD))
    header = ("path", "label", *(f"prob_member_{i}" for i in range(1, len(members) + 1)))
    rows = [
        (p, int(y), *(repr(float(v)) for v in col))
        for p, y, col in zip(predictions.paths, predictions.labels, member_probs.T)
    ]
    write_csv(out_dir / "predictions_members.csv", header, rows)
    write_skipped(out_dir / SKIPPED, loaded.skipped)
    leakage.write_csv(out_dir / LEAKAGE)
    return result
