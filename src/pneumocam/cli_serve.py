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
    import threading
    import time

    import uvicorn

    from .serve.app import create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[bold yellow]warning:[/] serving on {escape(host)}: anyone who can reach this machine can upload films "
            "and read the runs under --runs; there is no authentication"
        )
    app = create_app(checkpoint, runs, device.value, max_upload_mb, worker_thread=False)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    # HTTP in a second thread, the model in this main one: PyTorch's CPU kernels ran a served film's Grad-CAM in
    # 70 ms here and in 109 ms from a second thread (benchmarks/serve.py).
    listening = threading.Thread(target=server.run, name="pneumocam-http", daemon=True)
    listening.start()
    while not server.started:
        if not listening.is_alive():
            raise typer.Exit(1)  # uvicorn said why (e.g. the port is taken)
        time.sleep(0.05)
    console.print(f"[green]serving[/] http://{escape(host)}:{port}/  (API description: /openapi.json)")
    try:
        app.state.service.work_forever()
    except KeyboardInterrupt:
        server.should_exit = True
        listening.join(timeout=10)
