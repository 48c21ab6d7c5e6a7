"""Reading a run folder's files as hostile input: the one loader serve, report and compare use.

A run folder may have been shared, edited or built to hurt: every file is checked before it is read. Its size comes
from stat (a byte cap before a byte is read), JSON is refused past a nesting depth and must have the types the
readers use (pydantic), a heatmaps.npz has each member's shape, dtype and uncompressed size read from its header
before any array is loaded, and parsed files are cached by (path, modification time, size) so a large valid file is
parsed once, not on every request. Every refusal is a RunFileError naming the file and the reason.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from pneumocam.core.errors import PneumocamError

MAX_JSON_BYTES = 32 * 2**20  # results.json of a 100,000-film run with every film skipped is about 15 MB
MAX_JSON_DEPTH = 32  # results.json nests 7 deep
MAX_TABLE_BYTES = 128 * 2**20  # predictions.csv / importance.csv: about 300 bytes a film
MAX_NPZ_BYTES = 512 * 2**20  # heatmaps.npz on disk
MAX_NPZ_UNCOMPRESSED = 512 * 2**20  # what its arrays would take in memory
MAX_MAP_SIDE = 256  # a stored map's side: 7 at 224 px, 56 on a focused film's grid
IMAGE_SIZES = (16, 4096)  # the image_size a run may record
CACHED_FILES = 16


class RunFileError(PneumocamError):
    """A file of a run folder that is refused, with why (no server path, no traceback)."""


def _stat(path: Path, limit: int) -> os.stat_result:
    try:
        found = path.stat()
    except OSError as exc:
        raise RunFileError(f"{path.name} cannot be read ({type(exc).__name__})") from None
    if not path.is_file():
        raise RunFileError(f"{path.name} is not a regular file")
    if found.st_size > limit:
        raise RunFileError(f"{path.name} is {found.st_size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB it may be")
    return found


def inside(path: Path, root: Path) -> bool:
    """True when the path (made absolute, '..' folded, links not followed) lies inside root."""
    return Path(os.path.normpath(os.path.abspath(path))).is_relative_to(os.path.normpath(os.path.abspath(root)))


def resolves_inside(path: Path, root: Path) -> bool:
    """True when the path, every link followed, lies inside root's real location."""
    try:
        return path.resolve(strict=True).is_relative_to(root.resolve(strict=True))
    except (OSError, RuntimeError, ValueError):
        return False


def nesting_depth(value) -> int:
    """How deep lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def read_json(path: str | os.PathLike, limit: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """A JSON object from a run folder: at most `limit` bytes, nested at most `max_depth` deep."""
    path = Path(path)
    _stat(path, limit)
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise RunFileError(f"{path.name} nests deeper than {max_depth} levels") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFileError(f"{path.name} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{path.name} is not a JSON object")
    if nesting_depth(value) > max_depth:
        raise RunFileError(f"{path.name} nests deeper than {max_depth} levels")
    return value


def read_table(path: str | os.PathLike, limit: int = MAX_TABLE_BYTES) -> list[dict]:
    """A CSV table from a run folder, as rows keyed by its header: at most `limit` bytes."""
    path = Path(path)
    _stat(path, limit)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunFileError(f"{path.name} is not readable CSV ({type(exc).__name__})") from None


def npz_headers(path: str | os.PathLike, limit: int = MAX_NPZ_BYTES) -> dict[str, tuple[tuple, np.dtype, int]]:
    """name -> (shape, dtype, uncompressed bytes) of every array of an .npz, read from the headers alone."""
    path = Path(path)
    _stat(path, limit)
    found = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise RunFileError(f"{path.name} holds a member that is not an array: {info.filename[:40]!r}")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                        version, np.lib.format.read_array_header_2_0
                    )
                    shape, _fortran, dtype = read_header(member)
                found[info.filename[: -len(".npy")]] = (shape, dtype, info.file_size)
    except RunFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RunFileError(f"{path.name} is not a readable .npz ({type(exc).__name__})") from None
    return found


def read_heatmaps_checked(path: str | os.PathLike, wanted=("paths", "maps", "probs", "image_size")) -> dict:
    """The `wanted` arrays of a run's heatmaps.npz, each checked from its header before anything is loaded: paths
    (N,) text, maps (N, h, w) float with h, w <= MAX_MAP_SIDE, probs (N,) float, labels (N,) whole numbers,
    image_size one whole number within IMAGE_SIZES; what they would take in memory at most MAX_NPZ_UNCOMPRESSED.
    wanted None: every array of the file, each checked as above where it is one of these."""
    path = Path(path)
    headers = npz_headers(path)
    wanted = tuple(headers) if wanted is None else wanted  # None: every array the file holds
    missing = [k for k in wanted if k not in headers]
    if missing:
        raise RunFileError(f"{path.name} lacks {', '.join(missing)}")
    if sum(size for _, _, size in headers.values()) > MAX_NPZ_UNCOMPRESSED:
        raise RunFileError(f"{path.name} would take over {MAX_NPZ_UNCOMPRESSED / 2**20:.0f} MB in memory")
    shape = {k: headers[k][0] for k in headers}
    kind = {k: headers[k][1].kind for k in headers}
    n = next((shape[k][0] for k in ("paths", "probs", "labels") if k in wanted and len(shape[k]) == 1), -1)
    rules = {
        "paths": (kind.get("paths") == "U" and shape.get("paths") == (n,), "paths must be one list of text"),
        "probs": (kind.get("probs") == "f" and shape.get("probs") == (n,), "probs must be one number per film"),
        "labels": (kind.get("labels") in ("i", "u") and shape.get("labels") == (n,), "labels must be 0 or 1 per film"),
        "image_size": (kind.get("image_size") in ("i", "u") and shape.get("image_size") == (), "image_size must be "
                       "one whole number"),
        "maps": (
            kind.get("maps") == "f" and len(shape.get("maps", ())) == 3 and shape["maps"][0] == n
            and 1 <= min(shape["maps"][1:]) and max(shape["maps"][1:]) <= MAX_MAP_SIDE,
            f"maps must be (films, h, w) floats with sides of 1 to {MAX_MAP_SIDE}",
        ),
    }  # fmt: skip
    for key in wanted:
        ok, why = rules.get(key, (True, ""))
        if not ok:
            raise RunFileError(f"{path.name}: {why}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in wanted}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RunFileError(f"{path.name} is not a readable .npz ({type(exc).__name__})") from None
    if "image_size" in arrays and not IMAGE_SIZES[0] <= int(arrays["image_size"]) <= IMAGE_SIZES[1]:
        raise RunFileError(f"{path.name}: image_size {int(arrays['image_size'])} is outside {IMAGE_SIZES}")
    return arrays


# ------------------------------------------------------------------------------------------- results.json's layout
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class MetricsEntry(_Open):
    threshold: float
    n: int | None = None
    accuracy: float | None = None
    roc_auc: float | None = None


class GroupEntry(_Open):
    """One population's or stratum value's metrics (evaluation.populations.group_metrics), as the report reads them."""

    n: int
    n_normal: int
    n_pneumonia: int
    roc_auc: float | None = None
    ece: float | None = None
    at: dict[str, dict[str, float | None]] = {}
    share_flagged: float | None = None


class PopulationsRecord(_Open):
    by_population: dict[str, GroupEntry] | None = None
    by_stratum: dict[str, dict[str, GroupEntry]] | None = None


class ResultsRecord(_Open):
    """The parts of results.json every reader relies on, with their types (the rest is free)."""

    provenance: dict
    metrics: dict[str, MetricsEntry]
    config: dict = {}
    decision: dict | None = None
    populations: PopulationsRecord | None = None


def read_results(path: str | os.PathLike) -> dict:
    """results.json checked: a JSON object within the byte and depth caps whose provenance, metrics and config have
    the types the report and the viewer read."""
    path = Path(path)
    results = read_json(path)
    try:
        ResultsRecord.model_validate(results)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RunFileError(f"{path.name}: {where or 'its layout'}: {first['msg'].lower()}") from None
    return results


# ------------------------------------------------------------------------------------------- parsed once
class ParsedCache:
    """Parsed files keyed by (path, modification time, size): a large valid file is parsed once, not per request;
    a changed file is parsed again. At most `size` entries (least recently used go first)."""

    def __init__(self, size: int = CACHED_FILES):
        self.size, self._entries, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, path: str | os.PathLike, parse):
        path = Path(path)
        try:
            found = path.stat()
        except OSError as exc:
            raise RunFileError(f"{path.name} cannot be read ({type(exc).__name__})") from None
        key = (str(path), found.st_mtime_ns, found.st_size, parse)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = parse(path)
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value
