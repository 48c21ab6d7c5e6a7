"""`pneumocam lungs ...`: fit the small lung-field model on your masks; score an estimate against reference masks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from pneumocam.anatomy.lung_masks import fit_lung_model, score_lung_estimate
from pneumocam.anatomy.lungs import LungModel
from pneumocam.cli.errors import clean_errors, console
from pneumocam.core.defaults import IMAGE_SIZE, SEED
from pneumocam.core.errors import PneumocamError

lungs_app = typer.Typer(help="Lung-field estimates for images without masks.", no_args_is_help=True)


DICE_SEED = 1  # dice scores a draw other than fit's default one


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
    model, n = fit_lung_model(data, masks, split, max_images, epochs, image_size, seed)
    model.save(out)
    console.print(f"[green]lung model:[/] {escape(str(out))} (trained on {n} images)")


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
    found = score_lung_estimate(data, masks, split, estimator, max_images, image_size, seed)
    summary = found.summary()
    console.print(
        f"{'learned model ' + escape(str(model)) if model else 'classical estimate'} on {summary['n']} '{split}' images"
        f"{' of patients it was not trained on' if found.unseen_only else ''}: "
        f"mean Dice {summary['mean']:.3f}, median {summary['median']:.3f}, 10th percentile {summary['p10']:.3f}"
    )
