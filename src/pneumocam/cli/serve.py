"""`pneumocam serve`: the local web viewer and JSON API (serve/)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from pneumocam.cli.errors import clean_errors, console
from pneumocam.cli.options import PRECISION, Device, model_option, options
from pneumocam.core.defaults import REQUEST_TIMEOUT_S
from pneumocam.data.readers import DEFAULT_MAX_PIXELS
from pneumocam.serve.app import create_app


@clean_errors
@options(PRECISION)
def serve(
    checkpoint: str = model_option(..., "; loaded once."),
    runs: Optional[Path] = typer.Option(None, help="A folder of run folders to browse."),
    data_root: list[Path] = typer.Option(
        [], help="A folder whose films a run may show (its dataset must lie under one); a run's own folder always may."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (another than 127.0.0.1 only when you mean it)."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port."),
    max_upload_mb: float = typer.Option(50.0, min=0.001, help="Largest accepted upload (413 above it)."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, min=256, help="Largest film accepted, in pixels, read from its header before decoding."
    ),
    allow_slow_methods: bool = typer.Option(
        False, help="Also compute slow methods (scorecam: minutes a film on a CPU, blocking every other request)."
    ),
    request_timeout: float = typer.Option(
        REQUEST_TIMEOUT_S,
        min=1.0,
        help="Seconds one request may wait and compute; past it: 503, and its work is cancelled.",
    ),
    allowed_host: list[str] = typer.Option(
        [], help="Another name this server answers to in the Host header (loopback and --host always are)."
    ),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
    **settings,
):
    """A web page to drop a film and see the answer, its map and where it looks, and to browse runs; JSON API.

    No authentication: it listens on loopback by default, answers only requests addressed to its own names
    (Host header) and refuses requests sent by other web pages (Origin)."""

    import uvicorn  # deferred: only `pneumocam serve` needs it

    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[bold yellow]warning:[/] serving on {escape(host)}: anyone who can reach this machine can upload films "
            "and read the runs under --runs; there is no authentication"
        )
    app = create_app(
        checkpoint,
        runs,
        device.value,
        max_upload_mb,
        worker_thread=False,
        host=host,
        extra_hosts=tuple(allowed_host),
        allow_slow_methods=allow_slow_methods,
        request_timeout_s=request_timeout,
        max_pixels=max_pixels,
        precision=settings["precision"].value,
        data_roots=tuple(data_root),
    )
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
