"""What makes training resumable and its model self-describing: the per-epoch state, the run's saved settings
(checked again on resume), and the metadata model.pt carries (weights, data plan, thresholds, what it saw)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pneumocam import CLASS_NAMES
from pneumocam.core.errors import CheckpointError
from pneumocam.core.outputs import atomic_write_bytes
from pneumocam.core.precision import Precision
from pneumocam.core.provenance import library_versions
from pneumocam.core.schema import FIXED_THRESHOLD
from pneumocam.data import IMAGENET_MEAN, IMAGENET_STD
from pneumocam.model.network import ARCH, HEAD, trainable_state
from pneumocam.train.config import TrainConfig

if TYPE_CHECKING:
    from pneumocam.data import PreparedData

TRAIN_STATE_FORMAT = "pneumocam-train-state"


def save_train_state(
    path: Path, model, optimizer, scheduler, epoch: int, history: list, best: dict, config: TrainConfig, averaged=None
) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "format": TRAIN_STATE_FORMAT,
            "format_version": 1,
            "epoch": epoch,
            "model": trainable_state(model, config.mode),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": history,
            "best": best,
            "ema": averaged.state_dict() if averaged is not None else None,  # the weight average, if --ema
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_train_state(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"nothing to resume: {path} does not exist (the run stopped before its first epoch ended)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT or state.get("format_version") != 1:
        raise CheckpointError(f"{path} is not a pneumocam training state of a known version")
    return state


def checkpoint_metadata(
    config: TrainConfig,
    weights_info,
    prepared: PreparedData,
    epoch: int,
    val_metrics: dict,
    threshold,
    seen: dict,
    calibration,
    precision: Precision,
) -> dict:
    return {
        "arch": ARCH,
        "head": HEAD,
        "mode": config.mode,
        "weights": weights_info.to_dict(),
        "image_size": config.image_size,
        "focus": config.focus,  # every consumer shows the model its films the same way (focus.py)
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channels": "grey copied to RGB"},
        "class_names": list(CLASS_NAMES),
        "thresholds": {
            "default": FIXED_THRESHOLD,
            "youden_val": threshold.value,
            "youden_rule": threshold.rule,
            "youden_note": threshold.note,
        },
        "seed": config.seed,
        "epoch": epoch + 1,
        "val_metrics": val_metrics,
        "versions": library_versions(),
        "data": {"root": str(config.data), "fingerprint": prepared.fingerprint, "validation": prepared.validation_plan},
        "config": config.to_dict(),
        "seen": seen,  # content hashes and patient ids of what trained and selected this model (leakage checks)
        "calibration": calibration.to_dict() if calibration is not None else None,  # load_checkpoint applies it
        "precision": precision.to_dict(),  # of training, as fit resolved it
    }


def resumable_config(run_dir: str | Path, overrides: dict | None = None) -> tuple[Path, dict, TrainConfig]:
    """(training folder, its saved config.json, its TrainConfig) for a run to resume; settings given again must match.

    A `pneumocam run` folder is accepted too (its training lives in RUN/train). Silently ignoring a changed
    setting would make the resumed run differ from what the user asked for, so any difference is an error.
    """
    run_dir = Path(run_dir)
    if (run_dir / "train" / "config.json").is_file():
        run_dir = run_dir / "train"  # a `pneumocam run` folder
    if not (run_dir / "config.json").is_file() or "train" not in json.loads((run_dir / "config.json").read_text()):
        raise CheckpointError(
            f"{run_dir} is not a pneumocam training folder (no config.json): pass the folder "
            "`pneumocam train` printed, or a `pneumocam run` folder"
        )
    saved = json.loads((run_dir / "config.json").read_text())
    values = saved["train"]
    different = {k: (v, values.get(k)) for k, v in (overrides or {}).items() if values.get(k) != v}
    if different:
        listed = "; ".join(f"{k}: given {a!r}, the run has {b!r}" for k, (a, b) in sorted(different.items()))
        raise CheckpointError(
            f"settings given with resume differ from the run being resumed ({listed}): a resumed run keeps "
            "its own settings; start a new run to change them"
        )
    return run_dir, saved, TrainConfig(**values)
