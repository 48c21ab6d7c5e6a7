"""Atomic writes and fresh run folders: nothing a user made is overwritten or left half-written."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

INCOMPLETE_MARKER = "INCOMPLETE"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file beside the target, fsync, then rename over it in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs should read like any other file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    # backslashreplace keeps file names that are not valid UTF-8 readable instead of failing the write.
    return atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def to_jsonable(value: Any) -> Any:

    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN and infinity are not JSON
    return value


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def new_run_folder(parent: str | os.PathLike, prefix: str = "run") -> Path:
    """Create PARENT/<prefix>-YYYYmmdd-HHMMSS[-n], never reusing an existing folder; marked incomplete."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = parent / (f"{prefix}-{stamp}" if n == 0 else f"{prefix}-{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        (folder / INCOMPLETE_MARKER).write_text("this run has not finished; its outputs may be partial\n")
        return folder
    raise RuntimeError(f"could not create a fresh run folder in {parent}")


def mark_complete(folder: str | os.PathLike) -> None:
    marker = Path(folder) / INCOMPLETE_MARKER
    if marker.exists():
        marker.unlink()


def is_complete(folder: str | os.PathLike) -> bool:
    return Path(folder).is_dir() and not (Path(folder) / INCOMPLETE_MARKER).exists()


def write_skipped(path: str | os.PathLike, skipped: Iterable[Any]) -> Path:
    return write_csv(path, ["path", "reason"], ((s.path, s.reason) for s in skipped))
