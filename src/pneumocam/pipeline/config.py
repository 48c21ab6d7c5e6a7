"""Settings: TrainConfig (a training run) and ExperimentConfig (a whole run), with the checks run before anything
is written.

Also which images an experiment evaluates: a named split, or the held-out patients a checkpoint recorded.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

from pneumocam.core.defaults import ALPHA, BOOTSTRAP_RESAMPLES, N_DRAWS, N_PER_CLASS
from pneumocam.core.errors import PneumocamError, SettingError
from pneumocam.data import choose_validation, discover, split_holdout
from pneumocam.explain.cam import METHODS, TARGETS
from pneumocam.model.foreign import is_foreign
from pneumocam.model.network import build_model
from pneumocam.pipeline.shards import parse_shard
from pneumocam.train.config import TrainConfig

EVAL_SPLITS = ("test", "val", "heldout")  # heldout: patients of train set aside before training
DEFAULT_HOLDOUT_FRACTION = 0.15  # share of train's patients set aside for --eval-split heldout when training


@dataclass
class ExperimentConfig:
    """A whole run's settings, checked and resolved when made (as TrainConfig is), so values from a --config file
    are checked like typed ones. Checks that need the data or the weights are in validate_experiment."""

    train: TrainConfig
    eval_split: str = "test"
    checkpoint: str | None = None
    method: str = "gradcam"
    target: str = "pred"
    n_per_class: int | None = N_PER_CLASS  # None: every image of the split
    n_draws: int = N_DRAWS
    alpha: float = ALPHA
    grid_per_class: int = 4
    bootstrap: int = BOOTSTRAP_RESAMPLES
    synthetic: bool = False
    masks: dict[str, str] = field(default_factory=dict)  # region name -> mask folder (lesion, lungs, marker, ...)
    lung_model: str | None = None  # a LungModel file for images without a lung mask (else the classical estimate)
    regions: bool = True  # lung / diaphragm / body / outside-body attention measures
    trust_images: int = 16  # images per trust check (randomisation, deletion / insertion); 0 skips them
    trust_steps: int = 10
    reliance: bool = True  # the decision-reliance check (lungs removed / only the lungs kept; analysis/reliance.py)
    occlusion_films: int = 48  # occlusion maps of a model trained against its maps (explain/occlusion.py); 0 skips
    shard: str | None = None  # "i/N": explain only that part of the split into a part folder (shards.py)
    include_ood: bool = False  # keep films the domain-shift guard flagged in the group statistics
    strict: bool = False  # any overlap between evaluated images and what the model saw is an error
    guard_films: str | None = None  # a foreign model's in-distribution films: its guard is fitted on them
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    def __post_init__(self):
        for name, allowed in (("eval_split", EVAL_SPLITS), ("method", METHODS), ("target", TARGETS)):
            if getattr(self, name) not in allowed:
                raise SettingError(name, f"must be one of {', '.join(allowed)}, got '{getattr(self, name)}'")
        if self.guard_films and not (self.checkpoint and is_foreign(self.checkpoint)):
            raise PneumocamError(
                "--guard-films fits a guard for a foreign --model; a pneumocam model.pt carries its own (pneumocam "
                "guard fit)"
            )
        if self.occlusion_films < 0:
            raise SettingError("occlusion_films", "must be 0 (none) or more")
        if self.n_per_class is not None and self.n_per_class < 2:
            raise SettingError("n_per_class", "must be at least 2 (or 'all')")
        if self.shard:
            parse_shard(self.shard)
            if self.checkpoint is None:
                raise PneumocamError("--shard explains an existing model: give --checkpoint (train first, then shard)")
        if self.eval_split == "heldout" and self.checkpoint is None and self.train.holdout_fraction <= 0:
            self.train.holdout_fraction = DEFAULT_HOLDOUT_FRACTION  # training must set the held-out patients aside

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}


def validate_experiment(cfg: ExperimentConfig) -> None:
    """The checks that need the data or the weights, before training: the evaluated split, the weights, a leaking
    validation."""
    index = discover(cfg.train.data)
    if cfg.eval_split == "heldout":
        index.split("train")
    else:
        index.split(cfg.eval_split)  # a missing split fails now, not after training
    if cfg.checkpoint is None:
        build_model(cfg.train.weights)  # and so do missing or bad weights
        if cfg.eval_split == "val":
            *_, plan = choose_validation(
                index,
                cfg.train.val_source,
                cfg.train.val_fraction,
                cfg.train.data_seed,
                holdout_fraction=cfg.train.holdout_fraction,
                val_family=cfg.train.val_family,
            )
            if plan.source == "dataset":
                raise PneumocamError(
                    f"--eval-split val: this run would choose its best epoch and threshold on the dataset's val split "
                    f"({plan.n_val} images; {plan.reason}), so scores on that split would not be held-out. Evaluate on "
                    "test or heldout, or carve validation from train with --val-source carved"
                )


def evaluated_samples(index, split: str, meta: dict, checkpoint) -> list:
    """The evaluated images. 'heldout' is rebuilt from the checkpoint's own recorded plan (fraction and seed),
    never from the command line's defaults, so it is the part that model never trained or selected on."""
    if split != "heldout":
        return index.split(split)
    plan = (meta.get("data") or {}).get("validation") or {}
    fraction = plan.get("holdout_fraction") or 0.0
    if meta.get("foreign"):
        raise PneumocamError(
            f"{checkpoint} is a model pneumocam did not train: no held-out patients are recorded for it; evaluate a "
            "split it never saw with --eval-split test or val"
        )
    if fraction <= 0:
        raise PneumocamError(
            f"{checkpoint} was trained without a held-out part of train (no holdout fraction recorded): "
            "there is no held-out split to evaluate; use --eval-split test or val"
        )
    seed = plan.get("holdout_seed", meta.get("seed", 0))
    return split_holdout(index, fraction, seed)[1]
