"""The lung-field model against reference masks: fit it on a dataset's masked films, and score an estimate (the model
or the classical one) by Dice on films of patients it was not fitted on. `pneumocam lungs fit|dice` call these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumocam.anatomy.lungs import LungModel, classical_lungs, dice
from pneumocam.core.defaults import IMAGE_SIZE, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.progress import track
from pneumocam.data import Sample, discover
from pneumocam.data.masks import mask_path
from pneumocam.data.readers import read_grayscale, read_resized, resize_square


def masked_samples(data: Path, masks: Path, split: str, limit: int | None, seed: int) -> list[Sample]:
    """The split's films that have a reference mask; a seeded sample of `limit` of them when there are more."""
    samples = [s for s in discover(data).split(split) if mask_path(masks, s).is_file()]
    if not samples:
        raise PneumocamError(
            f"no image of the '{split}' split has a mask in {masks} (expected MASKS/{split}/CLASS/<stem>.png)"
        )
    return _sample(samples, limit, seed)


def _sample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    if limit and len(samples) > limit:
        return [samples[i] for i in sorted(np.random.default_rng(seed).choice(len(samples), limit, replace=False))]
    return samples


def fit_lung_model(
    data: Path, masks: Path, split: str, max_images: int | None, epochs: int, image_size: int = IMAGE_SIZE,
    seed: int = SEED,
) -> tuple[LungModel, int]:  # fmt: skip
    """(the lung model fitted on up to max_images masked films of the split, how many it was fitted on); the model
    records the patients it saw, so `score_lung_estimate` leaves them out."""
    samples = masked_samples(data, masks, split, max_images, seed)
    images = [read_resized(s.path, image_size) for s in samples]
    mask_images = [resize_square(read_grayscale(mask_path(masks, s)), image_size) for s in samples]
    model = LungModel.fit(images, mask_images, epochs=epochs, seed=seed, description=f"{data} / {masks}, split {split}")
    model.trained_on["patients"] = sorted({s.patient_id or s.path for s in samples})
    return model, len(samples)


@dataclass
class DiceScores:
    """Dice of a lung estimate against the reference masks, one per film (127 'ignore' pixels excluded)."""

    scores: np.ndarray
    unseen_only: bool  # True: films of patients the lung model was fitted on were left out

    def summary(self) -> dict:
        return {
            "n": len(self.scores),
            "mean": float(self.scores.mean()),
            "median": float(np.median(self.scores)),
            "p10": float(np.percentile(self.scores, 10)),
        }


def score_lung_estimate(
    data: Path, masks: Path, split: str, estimator: LungModel | None, max_images: int | None,
    image_size: int = IMAGE_SIZE, seed: int = SEED,
) -> DiceScores:  # fmt: skip
    """Dice of the estimator (the classical estimate when None) on up to max_images masked films of the split whose
    patients it was not fitted on."""
    seen = set(estimator.trained_on.get("patients", [])) if estimator else set()
    samples = [s for s in masked_samples(data, masks, split, None, seed) if (s.patient_id or s.path) not in seen]
    samples = _sample(samples, max_images, seed)
    if not samples:
        raise PneumocamError(
            "every masked image belongs to a patient the lung model was trained on: score it on another split"
        )
    scores = []
    for sample in track(samples, "Scoring lung estimate"):
        gray = read_resized(sample.path, image_size)
        reference = resize_square(read_grayscale(mask_path(masks, sample)), image_size)
        estimate = estimator.predict(gray) if estimator else classical_lungs(gray)
        scores.append(dice(estimate, reference == 255, reference == 127))
    return DiceScores(np.array(scores), bool(seen))
