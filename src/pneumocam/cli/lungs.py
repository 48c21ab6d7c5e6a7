"""`pneumocam lungs ...`: fit the small lung-field model on your masks; score an estimate against reference masks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.markup import escape

from pneumocam.anatomy.lungs import LungModel, classical_lungs, dice
from pneumocam.cli.errors import clean_errors, console
from pneumocam.core.defaults import IMAGE_SIZE, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.progress import track
from pneumocam.data import discover
from pneumocam.data.masks import mask_path
from pneumocam.data.readers import read_grayscale, read_resized, resize_square

lungs_app = typer.Typer(help="Lung-field estimates for images without masks.", no_args_is_help=True)


DICE_SEED = 1  # dice scores a draw other than fit's default one


def _masked_samples(data: Path, masks: Path, split: str, limit: Optional[int], seed: int):

    samples = [s for s in discover(data).split(split) if mask_path(masks, s).is_file()]
    if not samples:
        raise PneumocamError(
            f"no image of the '{split}' split has a mask in {masks} (expected MASKS/{split}/CLASS/<stem>.png)"
        )
    if limit and len(samples) > limit:
        samples = [samples[i] for i in sorted(np.random.default_rng(seed).choice(len(samples), limit, replace=False))]
    return samples


@lungs_app.command("fit")
@clean_errors
def lungs_fit(
    data: Path = typer.Option(..., help="Dataset folder."),
    masks: Path = typer.Option(
        ..., help="Lung masks laid out MASKS/{split}/{CLASS}/<stem>.png (0, 255 lung, 127 ignore)."
    ),
    out: Path = typer.Option(..., help="Where to write the lung model (an existing file is never overwritten)."),
    split: str = typer.Option("train"),
    max_images: Optional[int] = typer.Option(400, help="Train on at most this many masked images."),
    epochs: int = typer.Option(30),
    image_size: int = typer.Option(IMAGE_SIZE),
    seed: int = typer.Option(SEED),
):
    """Train the small lung-field model on your own masks."""

    if out.exists():
        raise PneumocamError(f"{out} exists: choose a new file name (nothing is overwritten)")
    samples = _masked_samples(data, masks, split, max_images, seed)

    images = [read_resized(s.path, image_size) for s in samples]
    mask_images = [resize_square(read_grayscale(mask_path(masks, s)), image_size) for s in samples]
    model = LungModel.fit(images, mask_images, epochs=epochs, seed=seed, description=f"{data} / {masks}, split {split}")
    model.trained_on["patients"] = sorted({s.patient_id or s.path for s in samples})
    model.save(out)
    console.print(f"[green]lung model:[/] {escape(str(out))} (trained on {len(samples)} images)")


@lungs_app.command("dice")
@clean_errors
def lungs_dice(
    data: Path = typer.Option(..., help="Dataset folder."),
    masks: Path = typer.Option(..., help="Reference lung masks."),
    split: str = typer.Option("val"),
    model: Optional[Path] = typer.Option(None, help="A lung model; without it the classical estimate is scored."),
    max_images: Optional[int] = typer.Option(300),
    image_size: int = typer.Option(IMAGE_SIZE),
    seed: int = typer.Option(DICE_SEED, help="Seed of the scored sample (another draw than fit's)."),
):
    """Score a lung estimate against reference masks (mean Dice; 127 'ignore' pixels excluded)."""

    estimator = LungModel.load(model) if model else None
    seen = set(estimator.trained_on.get("patients", [])) if estimator else set()
    samples = [s for s in _masked_samples(data, masks, split, None, seed) if (s.patient_id or s.path) not in seen]
    if max_images and len(samples) > max_images:
        samples = [
            samples[i] for i in sorted(np.random.default_rng(seed).choice(len(samples), max_images, replace=False))
        ]
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
    scores = np.array(scores)
    console.print(
        f"{'learned model ' + str(model) if model else 'classical estimate'} on {len(scores)} '{split}' images"
        f"{' of patients it was not trained on' if seen else ''}: "
        f"mean Dice {scores.mean():.3f}, median {np.median(scores):.3f}, 10th percentile "
        f"{np.percentile(scores, 10):.3f}"
    )
