"""Sharded explanation: `run --checkpoint M --shard i/N` explains the i-th of N parts of the evaluated split and
writes a part folder; `merge PARTS...` builds the run folder one process would have written.

A part holds only what is expensive per film, the Grad-CAM pass (logits, targets, maps on the film's and on the
input's grid, pooled features), as plain arrays in part.npz written atomically. The merge checks that the parts
belong together and that every shard is there (a missing or unfinished one is named, and can be rerun alone),
then runs every later stage (scores, regions, guard, metrics, trust, statistics, report) on the whole split,
exactly as a single process does.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from pneumocam.core.errors import PneumocamError
from pneumocam.core.outputs import atomic_write_bytes, is_complete
from pneumocam.explain.cam import CamResult
from pneumocam.pipeline.runfolder import RunFolder

PART_FILE = "part.npz"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' (1-based i) -> (i, N)."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise PneumocamError(f"--shard must look like 2/8 (this shard / number of shards), got '{text}'") from None
    if not 1 <= index <= count:
        raise PneumocamError(f"--shard {text}: the shard must be between 1 and {count}")
    return index, count


def shard_samples(samples: list, shard: str) -> list:
    """The shard's contiguous part of the evaluated samples (sorted by path, so every process agrees)."""
    index, count = parse_shard(shard)
    ordered = sorted(samples, key=lambda s: s.path)
    return [ordered[i] for i in np.array_split(np.arange(len(ordered)), count)[index - 1]]


def save_part(run_dir: Path, paths: list[str], film: CamResult, inputs: CamResult) -> None:

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        paths=np.array(paths, dtype=str),
        logits=film.logits,
        targets=film.targets,
        maps=film.maps,
        input_maps=inputs.maps,
        features=film.features if film.features is not None else np.zeros((len(paths), 0), np.float32),
        method=np.array(film.method),
        layer=np.array(film.layer),
        normalised=np.array(film.normalised),
    )
    atomic_write_bytes(run_dir / PART_FILE, buffer.getvalue())


def _load_part(folder: Path) -> dict:
    with np.load(folder / PART_FILE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def check_parts(folders: list[Path]) -> tuple[dict, list[dict]]:
    """(the experiment settings the parts share, each part's arrays), or a clear error naming what is wrong."""

    if not folders:
        raise PneumocamError("give the part folders to merge")
    settings, shards = None, {}
    for folder in folders:
        experiment = dict(RunFolder(folder).experiment)
        shard = experiment.get("shard")
        if not shard:
            raise PneumocamError(f"{folder} is not a shard's part (its run had no --shard)")
        if not is_complete(folder) or not (folder / PART_FILE).is_file():
            raise PneumocamError(f"shard {shard} in {folder} did not finish: rerun it alone with --shard {shard}")
        same = {k: v for k, v in experiment.items() if k not in ("shard", "command")}
        if settings is None:
            settings = same
        elif same != settings:
            different = sorted(k for k in same.keys() | settings.keys() if same.get(k) != settings.get(k))
            raise PneumocamError(f"{folder} belongs to another run (different {', '.join(different)})")
        index, count = parse_shard(shard)
        if index in shards:
            raise PneumocamError(f"shard {shard} given twice ({shards[index][0]} and {folder})")
        shards[index] = (folder, count)
    counts = {count for _, count in shards.values()}
    if len(counts) != 1:
        raise PneumocamError(f"the parts were cut into different numbers of shards: {sorted(counts)}")
    count = counts.pop()
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in shards]
    if missing:
        raise PneumocamError(f"missing shards: {', '.join(missing)}; run each with --shard, then merge again")
    return settings, [_load_part(shards[i][0]) for i in range(1, count + 1)]


def assembled(parts: list[dict]):
    """A function giving, for the evaluated films in any order, (film CamResult, input CamResult) from the parts."""
    paths = np.concatenate([p["paths"] for p in parts])
    row = {str(p): i for i, p in enumerate(paths)}

    def stack(key):
        return np.concatenate([p[key] for p in parts])

    logits, targets, maps, input_maps = stack("logits"), stack("targets"), stack("maps"), stack("input_maps")
    features = stack("features")
    first = parts[0]

    def result_for(wanted: list[str]) -> tuple[CamResult, CamResult]:
        missing = [p for p in wanted if p not in row]
        if missing:
            raise PneumocamError(
                f"{len(missing)} evaluated films are in no part (first: {missing[0]}): the data changed"
            )
        index = np.array([row[p] for p in wanted], dtype=np.int64)

        def result(grid):
            return CamResult(
                grid[index],
                logits[index],
                targets[index],
                str(first["method"]),
                str(first["layer"]),
                bool(first["normalised"]),
                features[index] if features.shape[1] else None,
            )

        return result(maps), result(input_maps)

    return result_for
