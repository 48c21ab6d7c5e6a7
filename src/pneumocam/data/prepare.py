"""The images a training run uses: the validation plan (with the held-out part set aside first), optional
per-class subsampling for quick runs, and both splits decoded at the run's size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pneumocam.core.errors import PneumocamError
from pneumocam.data.cache import LoadedImages, load_images
from pneumocam.data.discover import discover, fingerprint
from pneumocam.data.split import choose_validation, split_holdout


@dataclass
class PreparedData:
    train: LoadedImages
    val: LoadedImages
    validation_plan: dict
    fingerprint: str
    skipped: list = field(default_factory=list)


def _subsample(samples, max_per_class: int | None, seed: int):
    if not max_per_class:
        return samples
    rng = np.random.default_rng(seed)
    keep = []
    for label in (0, 1):
        members = [s for s in samples if s.label == label]
        chosen = rng.choice(len(members), size=min(max_per_class, len(members)), replace=False)
        keep.extend(members[i] for i in sorted(chosen))
    return keep


def planned_split(config, index):
    """(training samples, validation samples, the plan) of a TrainConfig's validation and held-out settings, before
    any film is read or subsampled."""
    return choose_validation(
        index,
        config.val_source,
        config.val_fraction,
        config.data_seed,
        holdout_fraction=config.holdout_fraction,
        val_family=config.val_family,
        val_population=config.val_population,
    )


def prepare_data(config) -> PreparedData:
    """config: a TrainConfig (data, the validation and held-out plan, max_per_class, image_size, use_cache)."""
    index = discover(config.data)
    train_samples, val_samples, plan = planned_split(config, index)
    train_samples = _subsample(train_samples, config.max_per_class, config.data_seed)
    val_samples = _subsample(val_samples, config.max_per_class, config.data_seed + 1)
    train = load_images(train_samples, config.image_size, use_cache=config.use_cache, description="Reading train")
    val = load_images(val_samples, config.image_size, use_cache=config.use_cache, description="Reading val")
    for part, name in ((train, "train"), (val, "validation")):
        if len(set(part.labels.tolist())) < 2:
            raise PneumocamError(f"the {name} images hold only one class after skipping unreadable files")
    plan_dict = plan.to_dict() | {
        "n_train_used": len(train.samples),
        "n_val_used": len(val.samples),
        "max_per_class": config.max_per_class,
        "holdout_fraction": config.holdout_fraction,
        "holdout_seed": config.data_seed,
    }
    if config.holdout_fraction > 0:
        _, held_out = split_holdout(index, config.holdout_fraction, config.data_seed)
        plan_dict["holdout_actual_fraction"] = len(held_out) / max(1, len(index.split("train")))
        plan_dict["n_heldout"] = len(held_out)
    return PreparedData(train, val, plan_dict, fingerprint(train.samples + val.samples), train.skipped + val.skipped)
