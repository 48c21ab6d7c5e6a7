"""Progress bars (rich) for anything that takes more than a few seconds."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


_thread = threading.local()


def silence_this_thread() -> None:
    """No bars from this thread (a server's worker: bars per request would cost time and flood its log)."""
    _thread.silent = True


def enabled() -> bool:
    return os.environ.get("PNEUMOCAM_NO_PROGRESS", "") in ("", "0") and not getattr(_thread, "silent", False)


def new_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with new_progress() as progress:
        task = progress.add_task(description, total=total, info="")
        for item in items:
            yield item
            progress.advance(task)
