"""Training throughput with and without the background batch thread (train/loop.py: PREFETCH), at 128 and 224 px:
images per second and the process's CPU utilisation (CPU time / wall / cores) during whole epochs of `full` training
of a random-init ResNet50 on phantom films, augmented as the recipes do. Interleaved, `--repeats` epochs each.

    python benchmarks/train_throughput.py [--films 128] [--repeats 2] [--record train-throughput]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

import pneumocam.train.loop as loop  # noqa: E402
from pneumocam.data.phantoms import make_phantom  # noqa: E402
from pneumocam.model.network import build_model  # noqa: E402
from pneumocam.train.config import TrainConfig  # noqa: E402
from pneumocam.train.loop import EpochData, Optimisation, class_weight_vector, make_optimizer, train_one_epoch  # noqa: E402

THREAD_DEPTH = loop.PREFETCH  # what training uses


def epoch(size: int, films: np.ndarray, labels: np.ndarray, depth: int) -> tuple[float, float]:
    """(images per second, CPU utilisation) of one epoch with PREFETCH = depth."""
    config = TrainConfig(data="-", mode="full", weights="none", image_size=size, epochs=1, batch_size=32, augment=True)
    model, _ = build_model("none", seed=0)
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0)
    step = Optimisation(model.to(memory_format=torch.channels_last), optimizer, scheduler)
    data = EpochData(films, labels, class_weight_vector(labels, "balanced"))
    loop.PREFETCH = depth
    began, cpu = time.perf_counter(), time.process_time()
    train_one_epoch(step, data, config, 0, torch.device("cpu"))
    wall = time.perf_counter() - began
    return len(films) / wall, (time.process_time() - cpu) / wall / len(os.sched_getaffinity(0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--record", default=None)
    args = parser.parse_args(argv)
    stamped = stamp()
    rng = np.random.default_rng(0)
    figures = {"films": args.films, "repeats": args.repeats, "sizes": {}}
    for size in (128, 224):
        films = np.stack([make_phantom(rng, i % 2, size).image for i in range(args.films)])
        labels = np.arange(args.films) % 2
        found = {0: [], THREAD_DEPTH: []}
        for _ in range(args.repeats):
            for depth in found:
                found[depth].append(epoch(size, films, labels, depth))
        before = statistics.median(r for r, _ in found[0])
        after = statistics.median(r for r, _ in found[THREAD_DEPTH])
        figures["sizes"][size] = {
            "images_per_s_without_thread": before,
            "images_per_s_with_thread": after,
            "ratio": after / before,
            "cpu_utilisation_without": statistics.median(u for _, u in found[0]),
            "cpu_utilisation_with": statistics.median(u for _, u in found[THREAD_DEPTH]),
        }
        print(size, figures["sizes"][size])
    if args.record:
        write_record(args.record, figures, note="whole epochs, interleaved; medians", stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
