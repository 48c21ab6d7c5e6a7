"""The commands' console (the library's notes and warnings go through core/messages.py), and how every command ends
on bad input: one clear message and exit status 2, never a traceback. Library errors name settings as the code does;
here a SettingError is shown with the option's spelling (--class-weights)."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from pneumocam.core.errors import PneumocamError, SettingError

console = Console(highlight=False, soft_wrap=True)  # what a command reports, on stdout
errors = Console(stderr=True, highlight=False, soft_wrap=True)  # warnings and errors, on stderr


def clean_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PneumocamError as exc:
            message = exc.as_option() if isinstance(exc, SettingError) else str(exc)  # settings shown as their options
            errors.print(f"[bold red]error:[/] {escape(message)}")
            raise typer.Exit(2) from None

    return wrapper
