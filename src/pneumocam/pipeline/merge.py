"""`merge PARTS...`: the run folder one process would have written, from every shard's part (shards.py)."""

from __future__ import annotations

from pathlib import Path

from pneumocam.pipeline.config import ExperimentConfig
from pneumocam.pipeline.experiment import run_experiment
from pneumocam.pipeline.shards import assembled, check_parts
from pneumocam.train.config import TrainConfig


def merge_parts(folders: list[Path], runs_dir) -> Path:
    """The run folder one process would have written, from every shard's part."""

    settings, parts = check_parts([Path(f) for f in folders])
    values = dict(settings)
    cfg = ExperimentConfig(train=TrainConfig(**values.pop("train")), **values)
    return run_experiment(cfg, runs_dir=runs_dir, computed=assembled(parts))
