"""Datasets as WebDataset tar shards: write a dataset's files into shards and stream them back.

WebDataset (a well-kept, dependency-light format: plain POSIX tars read sequentially) suits archives of 100k+
films on object stores or shared filesystems where a folder walk or one memory-mapped cache does not fit. Each
sample holds the file's original bytes (so DICOM stays DICOM and nothing is re-encoded), its label, split and
patient id; reading decodes the bytes with the same reader as every other command.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pneumocam import CLASS_NAMES
from pneumocam.core.progress import track
from pneumocam.data.discover import Sample
from pneumocam.data.readers import read_bytes, read_grayscale, tar_member


def write_shards(samples: list[Sample], pattern: str, max_count: int = 1000) -> list[str]:
    """Write the samples into shards named by pattern (e.g. OUT/kermany-%06d.tar); returns the shard paths."""
    import webdataset as wds  # deferred: only tar shards need it

    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with wds.ShardWriter(pattern, maxcount=max_count, verbose=0) as sink:
        for i, sample in enumerate(track(samples, "Writing shards", total=len(samples))):
            name = (tar_member(sample.path) or ("", sample.path))[1]  # a film already in a shard: its member name
            suffix = Path(name).suffix.lower().lstrip(".") or "bin"
            sink.write(
                {
                    "__key__": f"{i:08d}",
                    f"image.{suffix}": read_bytes(sample.path),
                    "json": json.dumps(
                        {
                            "label": CLASS_NAMES[sample.label],
                            "split": sample.split,
                            "patient_id": sample.patient_id,
                            "source": os.path.basename(sample.path),
                        }
                    ).encode(),
                }
            )
            if sink.fname not in written:
                written.append(sink.fname)
    return written


def _decode(content: bytes, suffix: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix="." + suffix) as handle:
        handle.write(content)
        handle.flush()
        return read_grayscale(handle.name)


def read_shards(urls: str | list[str]):
    """Yield (key, grey film, label, split, patient_id, source name) from shards, in the order written.
    urls: a list of paths or a brace pattern such as shards/kermany-{000000..000009}.tar."""
    import webdataset as wds  # deferred: only tar shards need it

    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        image_key = next(k for k in sample if k.startswith("image."))
        meta = json.loads(sample["json"])
        gray = _decode(sample[image_key], image_key.split(".", 1)[1])
        yield (
            sample["__key__"],
            gray,
            CLASS_NAMES.index(meta["label"]),
            meta["split"],
            meta["patient_id"],
            meta["source"],
        )


def describe(urls) -> dict:
    """Counts per split and class of a sharded dataset (one streaming pass)."""
    counts: dict[str, dict[str, int]] = {}
    for _, _, label, split, _, _ in read_shards(urls):
        per_split = counts.setdefault(split, {c: 0 for c in CLASS_NAMES})
        per_split[CLASS_NAMES[label]] += 1
    return counts


__all__ = ["describe", "read_shards", "write_shards"]
