"""Sharded explanation: two shards merged give the run folder one process writes; a missing shard is named."""

import csv
import json

import numpy as np
import pytest

from pneumocam.core.errors import PneumocamError
from pneumocam.pipeline.experiment import run_experiment
from pneumocam.pipeline.merge import merge_parts
from pneumocam.pipeline.shards import parse_shard


def _rows(run):
    with open(run / "predictions.csv", newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def test_two_shards_merged_equal_one_process(tiny_config, tiny_checkpoint, tmp_path):
    settings = dict(checkpoint=str(tiny_checkpoint / "model.pt"), trust_images=4)
    single = run_experiment(tiny_config(**settings), runs_dir=tmp_path / "single")
    parts = [run_experiment(tiny_config(**settings, shard=f"{i}/2"), runs_dir=tmp_path / "parts") for i in (1, 2)]
    sizes = [len(np.load(p / "part.npz")["paths"]) for p in parts]
    assert min(sizes) > 0 and abs(sizes[0] - sizes[1]) <= 1  # each shard explained its half
    merged = merge_parts(parts, tmp_path / "merged")

    one, two = _rows(single), _rows(merged)
    assert one.keys() == two.keys()
    for path, row in one.items():
        assert abs(float(row["prob_pneumonia"]) - float(two[path]["prob_pneumonia"])) <= 2e-6
        assert (row["label"], row["pred"], row["in_distribution"]) == (
            two[path]["label"],
            two[path]["pred"],
            two[path]["in_distribution"],
        )
    maps = [np.load(run / "heatmaps.npz") for run in (single, merged)]
    assert list(maps[0]["paths"]) == list(maps[1]["paths"])
    np.testing.assert_allclose(maps[0]["maps"], maps[1]["maps"], rtol=1e-4, atol=1e-6)
    stats = [json.loads((run / "stats.json").read_text()) for run in (single, merged)]
    assert stats[0].keys() == stats[1].keys()
    for name in stats[0]:
        a, b = stats[0][name]["sample"], stats[1][name]["sample"]
        assert a["draw"]["indices"] == b["draw"]["indices"]
        assert a["welch"]["p"] == pytest.approx(b["welch"]["p"], rel=1e-3, abs=1e-9)


def test_missing_or_foreign_shards_are_named(tiny_config, tiny_checkpoint, tmp_path):
    settings = dict(checkpoint=str(tiny_checkpoint / "model.pt"), trust_images=0)
    first = run_experiment(tiny_config(**settings, shard="1/3"), runs_dir=tmp_path / "a")
    with pytest.raises(PneumocamError, match="missing shards: 2/3, 3/3"):
        merge_parts([first], tmp_path / "out")
    other = run_experiment(tiny_config(**settings, shard="2/3", method="hirescam"), runs_dir=tmp_path / "b")
    with pytest.raises(PneumocamError, match="another run .*method"):
        merge_parts([first, other], tmp_path / "out")
    for bad in ("3", "0/2", "3/2", "a/b"):
        with pytest.raises(PneumocamError, match="shard"):
            parse_shard(bad)
