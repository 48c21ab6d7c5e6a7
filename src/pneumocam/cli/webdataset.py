"""`pneumocam webdataset ...`: a dataset folder or manifest written as WebDataset tar shards, and their counts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from pneumocam.cli.errors import clean_errors, console
from pneumocam.data import discover
from pneumocam.data.webdataset_io import describe as counts
from pneumocam.data.webdataset_io import write_shards

webdataset_app = typer.Typer(help="WebDataset tar shards for archives too big for a folder walk.", no_args_is_help=True)


@webdataset_app.command("write")
@clean_errors
def write(
    data: Path = typer.Argument(..., help="Dataset folder or CSV manifest."),
    pattern: str = typer.Argument(..., help="Shard names, e.g. shards/kermany-%06d.tar."),
    max_count: int = typer.Option(1000, help="Films per shard."),
):
    """Every readable film of every split, with its label, split and patient id, as tar shards."""

    index = discover(data)
    samples = [s for split in index.splits for s in index.split(split)]
    shards = write_shards(samples, pattern, max_count)
    console.print(f"[green]{len(samples)} films in {len(shards)} shards:[/] {escape(shards[0])} ...")


@webdataset_app.command("describe")
@clean_errors
def describe(urls: str = typer.Argument(..., help="Shard paths as a brace pattern: shards/k-{000000..000009}.tar.")):
    """Counts per split and class, read by streaming the shards."""

    for split, per_class in counts(urls).items():
        console.print(f"{split}: " + ", ".join(f"{c} {n}" for c, n in per_class.items()))
