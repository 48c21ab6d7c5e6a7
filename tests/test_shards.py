"""Sharded explanation: two shards merged give the run folder one process writes; a missing shard is named."""

import csv
import json

import numpy as np
import pytest

from pneumocam.core.errors import PneumocamError
from pneumocam.pipeline.experiment import run_experiment
from pneumocam.pipeline.merge import merge_parts
from pneumocam.pipeline.shards import parse_shard


def _rows(run, name: str = "predictions.csv"):
    with open(run / name, newline="") as f:
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
    scores = [_rows(run, "importance.csv") for run in (single, merged)]
    # The per-image normalised scores are left out: the 32 px checkpoint's maps are one layer4 cell (1x1) upsampled,
    # near-constant, and normalising them per image turns the maps' 1e-6 differences (the batches differ between one
    # process and two shards) into anything from 0 to 1. The raw scores and region shares are well conditioned.
    # Welch's p is compared where the films' spread is a thousand times the two runs' differences (a p of
    # near-constant samples, such as top10_mass of near-uniform maps, moves with their last digits).
    conditioned = [name for name in stats[0] if name not in ("mean_maxnorm", "mean_minmaxnorm")]
    compared = 0
    for name in stats[0]:
        a, b = stats[0][name]["sample"], stats[1][name]["sample"]
        assert a["draw"]["indices"] == b["draw"]["indices"]
        if name not in conditioned:
            continue
        values = np.array([[float(rows[p][name]) for p in one] for rows in scores])
        np.testing.assert_allclose(values[0], values[1], rtol=1e-4, atol=1e-6, err_msg=name)  # as the maps
        if np.ptp(values[0]) > 1000 * max(np.abs(values[0] - values[1]).max(), 1e-12):
            compared += 1
            assert a["welch"]["p"] == pytest.approx(b["welch"]["p"], rel=1e-3, abs=1e-9), name
    assert compared >= 2  # mean_raw and the region shares, at least


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
