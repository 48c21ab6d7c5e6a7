"""The `pneumocam` command line: thin wiring over the library modules."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import CLASS_NAMES
from .errors import PneumocamError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Explainable pneumonia detection on chest X-rays: train, evaluate, explain, test, report.")
console = Console(stderr=False, highlight=False)


def clean_errors(command):
    """Bad input ends in one clear message and exit status 2, never in a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PneumocamError as exc:
            Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@clean_errors
def data(
    root: Path = typer.Argument(..., help="Dataset folder ({train,val,test}/{NORMAL,PNEUMONIA}/) or a CSV manifest."),
    image_size: int = typer.Option(224, help="Side of the square model input, in pixels."),
    val_source: str = typer.Option("auto", help="auto | carved | dataset: where validation images come from."),
    val_fraction: float = typer.Option(0.2, help="Share of train's patients carved out for validation."),
    seed: int = typer.Option(0, help="Seed of the validation split."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode every image again instead of using the cache."),
    skipped_csv: Optional[Path] = typer.Option(None, help="Also write the skipped files (path, reason) here."),
):
    """Check a dataset before a long run: counts, unreadable files, the validation split."""
    from .data import choose_validation, discover, load_images
    from .outputs import write_skipped

    index = discover(root)
    table = Table(title=f"{escape(str(index.root))} ({index.source})")
    for column in ("split", *CLASS_NAMES, "total", "readable", "skipped"):
        table.add_column(column, justify="left" if column == "split" else "right")
    skipped = []
    for split in index.splits:
        samples = index.split(split)
        loaded = load_images(samples, image_size, use_cache=not no_cache, description=f"Reading {split}")
        skipped.extend(loaded.skipped)
        counts = index.counts()[split]
        table.add_row(split, *(str(counts[c]) for c in CLASS_NAMES), str(len(samples)), str(len(loaded.samples)),
                      str(len(loaded.skipped)))
    console.print(table)
    console.print(f"ignored: {index.ignored_hidden} hidden files, {index.ignored_non_image} non-image files")
    for folder in index.unknown_folders:
        console.print(f"[yellow]ignored unknown folder:[/] {escape(folder)}")
    for item in skipped:
        console.print(f"[yellow]skipped[/] {escape(item.path)}: {escape(item.reason)}")
    if skipped_csv:
        write_skipped(skipped_csv, skipped)
    if "train" in index.splits:
        _, _, plan = choose_validation(index, source=val_source, fraction=val_fraction, seed=seed)
        console.print(
            f"validation: {plan.source} ({plan.reason}); grouped by {plan.grouping}; "
            f"train {plan.n_train} images / {plan.patients_train} patients, "
            f"val {plan.n_val} images / {plan.patients_val} patients, shared patients: {plan.shared_patients}"
        )


@app.command()
@clean_errors
def phantoms(
    out: Path = typer.Argument(..., help="Folder to create; images go to OUT/images, masks beside them."),
    train: int = typer.Option(200, help="Phantoms per class in train."),
    val: int = typer.Option(0, help="Phantoms per class in val."),
    test: int = typer.Option(50, help="Phantoms per class in test."),
    image_size: int = typer.Option(224, help="Side of the square images."),
    seed: int = typer.Option(0),
    shortcut: float = typer.Option(0.0, help="0: none; p in (0.5, 1]: corner marker on PNEUMONIA with prob. p, on NORMAL with 1-p."),
):
    """Write synthetic chest X-ray phantoms with lung and lesion masks (Kermany layout)."""
    from .data.phantoms import write_phantom_dataset

    if out.exists() and any(out.iterdir()):
        raise PneumocamError(f"{out} exists and is not empty: choose a new folder (nothing is overwritten)")
    counts = {k: v for k, v in (("train", train), ("val", val), ("test", test)) if v > 0}
    written = write_phantom_dataset(out, counts, size=image_size, seed=seed, shortcut=shortcut)
    console.print(f"phantoms written to {escape(str(written.images))}; masks in {escape(str(written.lung_masks.parent))}")


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
