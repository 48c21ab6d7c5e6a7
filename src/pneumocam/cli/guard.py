"""`pneumocam guard fit`: give a model.pt (e.g. one trained before the guard existed) its domain-shift guard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from pneumocam.cli.errors import clean_errors, console
from pneumocam.cli.options import Device
from pneumocam.core.defaults import BATCH_SIZE
from pneumocam.model.network import resolve_device
from pneumocam.train.guard_fit import fit_checkpoint_guard

guard_app = typer.Typer(help="The domain-shift guard stored in model.pt.", no_args_is_help=True)


@guard_app.command("fit")
@clean_errors
def guard_fit(
    checkpoint: Path = typer.Option(..., help="A pneumocam model.pt: the guard is stored in it."),
    data: Optional[Path] = typer.Option(
        None, help="The dataset it was trained on, if it moved (default: the path model.pt recorded)."
    ),
    batch_size: int = typer.Option(BATCH_SIZE, help="Images per batch."),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
):
    """Fit the guard on the model's own training and validation films (the split its plan recorded)."""

    fitted = fit_checkpoint_guard(checkpoint, data, batch_size, resolve_device(device.value))
    console.print(
        f"guard fitted on {fitted['n_train']} training films ({fitted['features']}); threshold "
        f"{fitted['threshold']:.2f} passes {fitted['val_pass_rate']:.1%} of {fitted['n_val']} validation films"
    )
    console.print(f"[green]stored in:[/] {escape(str(checkpoint))}")
