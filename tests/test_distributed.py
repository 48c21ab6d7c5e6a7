"""torchrun: two CPU processes (gloo) train the same weights as one process with the same global batch."""

import json
import os
import subprocess
import sys

import torch

from pneumocam.model.network import load_checkpoint


def _train(phantom_data, out, batch_size, nproc=None):
    args = [
        "train",
        "--data",
        str(phantom_data.images),
        "--mode",
        "frozen",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        str(batch_size),
        "--val-source",
        "dataset",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "-m"] if nproc else ["-m"]
    )
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *launcher[1:], "pneumocam", *args] if nproc else [sys.executable, "-m", "pneumocam", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (folder,) = list(out.iterdir())  # one run folder, written by rank 0 alone
    return folder


def test_torchrun_two_processes_equal_one_process_with_the_global_batch(phantom_data, tmp_path):
    two = _train(phantom_data, tmp_path / "two", batch_size=8, nproc=2)
    one = _train(phantom_data, tmp_path / "one", batch_size=16)
    config = json.loads((two / "config.json").read_text())
    assert config["world_size"] == 2 and config["distributed"]["global_batch"] == 16
    assert json.loads((one / "config.json").read_text())["world_size"] == 1
    a, meta_a = load_checkpoint(two / "model.pt")
    b, meta_b = load_checkpoint(one / "model.pt")
    # Frozen mode: only the head trains, on features both computed in eval mode; the two differ only in the order
    # of floating-point sums (the all-reduce), hence a tolerance far below the weights' scale (~1e-2).
    torch.testing.assert_close(a.fc.weight, b.fc.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.fc.bias, b.fc.bias, atol=1e-6, rtol=1e-5)
    assert meta_a["epoch"] == meta_b["epoch"]
    history = [json.loads((run / "history.json").read_text()) for run in (two, one)]
    assert [round(r["val_auc"], 6) for r in history[0]] == [round(r["val_auc"], 6) for r in history[1]]


def test_more_processes_than_gpus_is_refused_before_joining_the_group(monkeypatch):
    """torchrun --nproc-per-node 2 on a one-GPU machine: a clear SettingError, not CUDA's 'invalid device ordinal'
    (seen on an H200 machine by scripts/gpu_check.py) or NCCL's duplicate-GPU failure."""
    import pytest

    from pneumocam.core.distributed import init_distributed
    from pneumocam.core.errors import SettingError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    joined = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kw: joined.append(kw))
    with pytest.raises(SettingError, match=r"local rank 1.*1 GPU\(s\).*--nproc-per-node 1"):
        init_distributed(torch.device("cuda"))
    assert joined == []
