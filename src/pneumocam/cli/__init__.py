"""The command line: typer wiring over the library and the pipeline. The console script is `pneumocam.cli.entry:main`
(commands load on first use); the typer app itself is `pneumocam.cli.app:app`."""

from pneumocam.cli.entry import main

__all__ = ["main"]
