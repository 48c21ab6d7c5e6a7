"""Patient ids, acquisition families, the patient-grouped and the family validation splits, and balanced sampling."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from pneumocam.core.defaults import SEED, VAL_FRACTION
from pneumocam.core.errors import DataError, SettingError

if TYPE_CHECKING:
    from pneumocam.data.discover import DatasetIndex, Sample

# Kermany names: person<ID>_<bacteria|virus>_<n>, IM-<ID>-<n>, NORMAL2-IM-<ID>-<n>; phantoms: phantom-<ID>-<n>.
# IM and NORMAL2-IM are different numbering series, so they stay different patients.
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_\d+", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-\d+", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-\d+", re.IGNORECASE),
    re.compile(r"^(phantom-\d+)-\d+", re.IGNORECASE),
)


def patient_id_from_name(name: str) -> str | None:
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1).lower()
    return None


# Acquisition families from file names: Kermany's NORMAL films come in two numbering series (IM-*, NORMAL2-IM-*)
# from different acquisitions. A manifest's `family` column overrides the name. --val-source family validates on
# one whole family the model never trained on, so validation sees a shift that held-out patients do not.
_FAMILY_PATTERNS = (
    ("NORMAL2-IM", re.compile(r"^NORMAL2-IM-\d+", re.IGNORECASE)),
    ("IM", re.compile(r"^IM-\d+", re.IGNORECASE)),
    ("person", re.compile(r"^person\d+_", re.IGNORECASE)),
    ("phantom", re.compile(r"^phantom-\d+", re.IGNORECASE)),
)
VAL_SOURCES = ("auto", "carved", "dataset", "family", "population")


def family_from_name(name: str) -> str | None:
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.match(name):
            return family
    return None


@dataclass
class ValidationPlan:
    source: str  # "carved" (patient-grouped, from train), "dataset" (the dataset's own val) or "family"
    reason: str
    grouping: str  # "patient" or "file"
    seed: int
    fraction: float
    n_train: int
    n_val: int
    patients_train: int
    patients_val: int
    shared_patients: int
    actual_fraction: float = 0.0  # the share of images carved (or used) for validation, as measured
    family: str | None = None  # --val-source family: the acquisition family held out whole
    population: str | None = None  # --val-source population: the population held out whole

    def to_dict(self) -> dict:
        return asdict(self)


def _groups(samples: list[Sample]) -> tuple[np.ndarray, str]:
    ids = [s.patient_id for s in samples]
    missing = sum(1 for i in ids if i is None)
    grouping = (
        "patient" if missing == 0 else f"file for {missing} of {len(ids)} images without a patient id in their name"
    )
    return np.array([i if i is not None else f"file:{s.path}" for i, s in zip(ids, samples)]), grouping


def carve_validation(
    samples: list[Sample], fraction: float = VAL_FRACTION, seed: int = SEED, labels_carved: tuple[int, ...] = (0, 1)
) -> tuple[list[Sample], list[Sample], str]:
    """Split train into (train, val), stratified by class, no patient on both sides, deterministic by seed
    (labels_carved: the classes to carve from; the others stay in train).

    Per class, patients are shuffled by the seed and taken in that order while the running image count gets
    closer to fraction x the class's images: each class's share then misses the request by at most half of
    one patient's films, and the whole split by at most one patient group. (K-fold splitters can only cut
    1/k, so 0.3 would become a third.)
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, got {fraction}")
    order = sorted(range(len(samples)), key=lambda i: samples[i].path)  # independent of listing order
    ordered = [samples[i] for i in order]
    labels = np.array([s.label for s in ordered])
    groups, grouping = _groups(ordered)
    names, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(names))
    positives = np.bincount(inverse, weights=labels, minlength=len(names))
    stratum = (positives * 2 >= sizes).astype(int)  # a patient's class: the majority of their films
    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(names), dtype=bool)
    for label in labels_carved:
        members = np.flatnonzero(stratum == label)
        if len(members) < 2:
            raise DataError(
                f"too few patients in class {label} to carve a {fraction:.0%} validation split "
                f"({len(members)} patients); add images or pass --val-source dataset"
            )
        members = members[rng.permutation(len(members))]
        running = np.cumsum(sizes[members])
        target = fraction * running[-1]
        # at least one patient on each side; ties go to the smaller validation part
        take = 1 + int(np.argmin(np.abs(running[:-1] - target)))
        in_val[members[:take]] = True
    val_mask = in_val[inverse]
    return ([s for s, v in zip(ordered, val_mask) if not v], [s for s, v in zip(ordered, val_mask) if v], grouping)


def carve_family_validation(
    samples: list[Sample], seed: int = SEED, family: str | None = None
) -> tuple[list[Sample], list[Sample], str, str]:
    """(train, val, grouping, the family held out): every NORMAL film of one acquisition family (the smallest by
    default) goes to validation, whole, with the same share of PNEUMONIA films carved by patient from the rest,
    so validation keeps train's class balance and no patient is on both sides."""
    normal = [s for s in samples if s.label == 0]
    counts = Counter(s.family for s in normal if s.family)
    if len(counts) < 2:
        raise DataError(
            "--val-source family needs NORMAL films from at least two acquisition families (file names IM-* and "
            f"NORMAL2-IM-*, or a manifest 'family' column); found {dict(counts) or 'none'}"
        )
    family = family or min(counts, key=lambda f: (counts[f], f))
    if family not in counts:
        raise DataError(f"--val-family {family}: no NORMAL films of that family; found {', '.join(sorted(counts))}")
    held = [s for s in normal if s.family == family]
    share = len(held) / len(normal)
    rest = [s for s in samples if not (s.label == 0 and s.family == family)]
    train, val, grouping = carve_validation(rest, share, seed, labels_carved=(1,))
    return train, sorted(held + val, key=lambda s: s.path), grouping, family


HOLDOUT_SEED_OFFSET = 7919  # the held-out draw must differ from the validation draw with the same seed


def split_holdout(index: DatasetIndex, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(rest of train, held-out part): patients set aside before validation is carved, never trained or selected on."""
    if fraction <= 0:
        return index.split("train"), []
    rest, held_out, _ = carve_validation(index.split("train"), fraction, seed + HOLDOUT_SEED_OFFSET)
    return rest, held_out


def choose_validation(
    index: DatasetIndex,
    source: str = "auto",
    fraction: float = VAL_FRACTION,
    seed: int = SEED,
    min_dataset_val: int = 100,
    holdout_fraction: float = 0.0,
    val_family: str | None = None,
    val_population: str | None = None,
) -> tuple[list[Sample], list[Sample], ValidationPlan]:
    """Pick the validation images: the dataset's own val when it is large enough, else carved from train
    (from what remains of train after a held-out part, when holdout_fraction > 0); with source 'family', one
    whole acquisition family (val_family, else the smallest) and a matched share of PNEUMONIA patients."""
    train, _ = split_holdout(index, holdout_fraction, seed)
    own_val = [s for s in index.samples if s.split == "val"]
    if source not in VAL_SOURCES:
        raise SettingError("val_source", f"must be one of {', '.join(VAL_SOURCES)}, got '{source}'")
    if source == "dataset" and not own_val:
        raise DataError(f"--val-source dataset, but {index.root} has no val split; use --val-source carved")
    use_dataset = source == "dataset" or (source == "auto" and len(own_val) >= min_dataset_val)
    family = population = None
    if source == "population":
        train_part, val_part, population = population_validation(train, val_population)
        grouping = "population"
        reason = f"every film of the population {population} held out whole (leave-one-population-out)"
    elif source == "family":
        train_part, val_part, grouping, family = carve_family_validation(train, seed, val_family)
        reason = (
            f"every NORMAL film of the acquisition family {family} held out whole, with the same share of PNEUMONIA "
            "patients"
        )
    elif use_dataset:
        train_part, val_part = train, own_val
        groups_train, grouping = _groups(train_part)
        reason = (
            "requested"
            if source == "dataset"
            else f"the dataset's val holds {len(own_val)} >= {min_dataset_val} images"
        )
    else:
        train_part, val_part, grouping = carve_validation(train, fraction, seed)
        reason = (
            "requested"
            if source == "carved"
            else (
                f"the dataset's val holds {len(own_val)} images (< {min_dataset_val}); "
                f"carved {fraction:.0%} of train's patients instead"
            )
        )
    train_ids = {g for g in _groups(train_part)[0]}
    val_ids = {g for g in _groups(val_part)[0]}
    plan = ValidationPlan(
        source="population" if population else "family" if family else "dataset" if use_dataset else "carved",
        reason=reason,
        grouping=grouping,
        seed=seed,
        fraction=fraction,
        n_train=len(train_part),
        n_val=len(val_part),
        patients_train=len(train_ids),
        patients_val=len(val_ids),
        shared_patients=len(train_ids & val_ids),
        actual_fraction=len(val_part) / max(1, len(train_part) + len(val_part)),
        family=family,
        population=population,
    )
    return train_part, val_part, plan


def population_validation(samples: list[Sample], population: str | None) -> tuple[list, list, str]:
    """(train, val, the population held out): every film of one population validates, every other one trains
    (evaluation.populations.leave_one_population_out's fold for that population)."""
    names = sorted({s.population for s in samples if s.population})
    if population not in names or len(names) < 2:
        raise DataError(
            f"--val-source population needs --val-population naming one of two or more populations in the data "
            f"(a manifest's population column, or a manifest of datasets); found: {', '.join(names) or 'none'}"
        )
    return (
        [s for s in samples if s.population != population],
        [s for s in samples if s.population == population],
        population,
    )


def balanced_indices(labels: np.ndarray | list[int], n_per_class: int, seed: int) -> np.ndarray:
    """n_per_class random indices from each class, sorted; the same seed gives the same draw."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        if len(members) < n_per_class:
            raise DataError(
                f"class {label} has {len(members)} images, fewer than the {n_per_class} requested per class"
            )
        chosen.append(rng.choice(members, size=n_per_class, replace=False))
    return np.sort(np.concatenate(chosen))
