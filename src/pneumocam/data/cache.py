"""Decode and resize a split once, then keep it as one uint8 array on disk.

The cache key covers the file list, labels, sizes, modification times, the image size and
the reader version, so any change to the data invalidates it. Epochs and Grad-CAM passes
read the array (memory-mapped) and never decode JPEGs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pneumocam.core.progress import track
from pneumocam.data.discover import Sample, Skipped
from pneumocam.data.readers import UnreadableImage, file_stamp, read_resized

READER_VERSION = 1


@dataclass
class LoadedImages:
    samples: list[Sample]  # the readable ones, aligned with images
    images: np.ndarray  # uint8, (N, size, size)
    skipped: list[Skipped]
    from_cache: bool

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.samples]


def default_cache_dir() -> Path:
    return Path(os.environ.get("PNEUMOCAM_CACHE_DIR") or Path.home() / ".cache" / "pneumocam")


def cache_key(samples: list[Sample], size: int) -> str:
    digest = hashlib.sha256(f"reader{READER_VERSION}\0size{size}\n".encode())
    for sample in samples:
        try:
            stamp = file_stamp(sample.path)
        except OSError as exc:
            stamp = f"error {exc.errno}"
        digest.update(f"{sample.path}\0{sample.label}\0{stamp}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def _decode_all(samples: list[Sample], size: int, description: str) -> tuple[np.ndarray, list[int], list[Skipped]]:
    def read_one(sample: Sample) -> np.ndarray | str:
        try:
            return read_resized(sample.path, size)
        except UnreadableImage as exc:
            return str(exc)

    images = np.empty((len(samples), size, size), dtype=np.uint8)
    kept: list[int] = []
    skipped: list[Skipped] = []
    # Pillow releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = pool.map(read_one, samples, chunksize=16)
        for i, result in enumerate(track(results, description, total=len(samples))):
            if isinstance(result, str):
                skipped.append(Skipped(samples[i].path, result))
            else:
                images[len(kept)] = result
                kept.append(i)
    return images[: len(kept)], kept, skipped


def load_images(
    samples: list[Sample],
    size: int,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    description: str = "Reading images",
) -> LoadedImages:
    """Read the samples into one (N, size, size) uint8 array; unreadable files go to `skipped`."""
    if not use_cache:
        images, kept, skipped = _decode_all(samples, size, description)
        return LoadedImages([samples[i] for i in kept], images, skipped, from_cache=False)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = folder / cache_key(samples, size)
    if (entry / "meta.json").exists():
        try:
            meta = json.loads((entry / "meta.json").read_text())
            images = np.load(entry / "images.npy", mmap_mode="r", allow_pickle=False)
            skipped = [Skipped(samples[i].path, r) for i, r in zip(meta["skipped"], meta["reasons"])]
            return LoadedImages([samples[i] for i in meta["kept"]], images, skipped, from_cache=True)
        except (OSError, ValueError, KeyError, IndexError):
            pass  # a damaged cache entry is rebuilt below
    images, kept, skipped = _decode_all(samples, size, description)
    skipped_index = {s.path: i for i, s in enumerate(samples)}
    meta = {
        "kept": kept,
        "skipped": [skipped_index[s.path] for s in skipped],
        "reasons": [s.reason for s in skipped],
        "size": size,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
        np.save(staging / "images.npy", images, allow_pickle=False)
        (staging / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(staging, entry)  # atomic: readers never see a half-written entry
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process wrote the same entry first
    except OSError:
        pass  # the cache is an optimisation: a read-only or full disk must not stop the run
    return LoadedImages([samples[i] for i in kept], images, skipped, from_cache=False)


def resized(loaded: LoadedImages, size: int) -> LoadedImages:
    """The same images at another square size (antialiased bilinear); the same object when the size already matches."""
    if loaded.images.shape[-1] == size:
        return loaded

    out = np.empty((len(loaded.images), size, size), dtype=np.uint8)
    for start in range(0, len(out), 256):
        chunk = torch.from_numpy(np.array(loaded.images[start : start + 256])).float().unsqueeze(1)
        small = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + len(chunk)] = small.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return LoadedImages(loaded.samples, out, loaded.skipped, loaded.from_cache)
