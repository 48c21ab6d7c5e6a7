"""The library's one message channel. Library code says what a user should read through `note` (facts as they are
decided: the precision chosen, an estimated time, a summary) and `warn` (something that must not be missed); the
application decides where they go (`use_channel`: the command line points them at its consoles). By default notes
go to stdout and warnings to stderr through rich (messages may carry its markup). No library module prints."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

_stdout = Console(highlight=False, soft_wrap=True)
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def _default_note(text: str) -> None:
    _stdout.print(text)


def _default_warn(text: str) -> None:
    _stderr.print(f"[bold yellow]warning:[/] {escape(text)}")


_channel: dict[str, Callable[[str], None]] = {"note": _default_note, "warn": _default_warn}


def note(text: str) -> None:
    """A fact the user reads as it happens (rich markup allowed)."""
    _channel["note"](text)


def warn(text: str) -> None:
    """Something the user must not miss (plain text: it is escaped where rendered)."""
    _channel["warn"](text)


def silent(_text: str) -> None:
    """A channel end that drops what it is given (a torchrun process other than rank 0)."""


@contextmanager
def use_channel(note: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None):
    """Send the library's notes and warnings to these functions while inside (each None: unchanged)."""
    before = dict(_channel)
    _channel.update({k: v for k, v in (("note", note), ("warn", warn)) if v is not None})
    try:
        yield
    finally:
        _channel.update(before)
