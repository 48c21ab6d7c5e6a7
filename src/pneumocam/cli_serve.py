"""`pneumocam serve`: the local web viewer and JSON API (serve/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .cli_errors import clean_errors
from .cli_options import Device

console = Console(highlight=False, soft_wrap=True)


@clean_errors
def serve(
    checkpoint: Path = typer.Option(..., help="A pneumocam model.pt, loaded once."),
    runs: Optional[Path] = typer.Option(None, help="A folder of run folders to browse."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (another than 127.0.0.1 only when you mean it)."),
    port: int = typer.Option(8000, help="Port."),
    max_upload_mb: float = typer.Option(50.0, help="Largest accepted upload (413 above it)."),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
):
    """A web page to drop a film and see the answer, its map and where it looks, and to browse runs; JSON API."""
    import uvicorn

    from .serve.app import create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[bold yellow]warning:[/] serving on {escape(host)}: anyone who can reach this machine can upload films "
            "and read the runs under --runs; there is no authentication"
        )
    app = create_app(checkpoint, runs, device.value, max_upload_mb)
    console.print(f"[green]serving[/] http://{escape(host)}:{port}/  (API description: /openapi.json)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
