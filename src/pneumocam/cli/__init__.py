"""The command line: typer wiring over the library and the pipeline (`pneumocam.cli:app`)."""

from pneumocam.cli.app import app, main

__all__ = ["app", "main"]
