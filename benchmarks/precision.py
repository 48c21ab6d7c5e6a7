"""fp32 against bf16 autocast on this machine (a benchmark, not a test): pneumocam's own training epoch
(train_one_epoch: full mode, augmentation, AdamW, batch 32, channels_last) at 128 and 224 px, the Grad-CAM pass, and
the machine's matmul ceilings in each precision. fp32 and bf16 rounds alternate in one process, so both see the same
moments of a noisy machine; the figures are medians over the rounds.

    python benchmarks/precision.py [--rounds 3] [--films 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402


def matmul_tflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - began)
    return 2 * n**3 / min(times) / 1e12


def measure(rounds: int = 3, n_films: int = 64) -> dict:
    """Images per second of fp32 and bf16 rounds, alternating, with the ratios to each other and to the ceilings."""
    from pneumocam.core.precision import autocast, resolve_precision
    from pneumocam.data.phantoms import make_phantom
    from pneumocam.explain.cam import make_cam
    from pneumocam.model.network import apply_mode, build_model
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.loop import EpochData, Optimisation, class_weight_vector, make_optimizer, train_one_epoch

    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    labels = np.arange(n_films) % 2
    films = {size: np.stack([make_phantom(rng, int(y), size).image for y in labels]) for size in (128, 224)}
    weights = class_weight_vector(labels, "balanced")
    timings: dict[str, list[float]] = {}
    for round_ in range(rounds):
        for size in (128, 224):
            for precision in ("fp32", "bf16"):
                config = TrainConfig(
                    data="-", mode="full", weights="none", epochs=1, augment=True, precision=precision, seed=round_
                )
                model, _ = build_model("none", seed=0)
                params = apply_mode(model, "full")
                model = model.to(memory_format=torch.channels_last)
                optimizer = make_optimizer(params, config)
                scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
                step = Optimisation(model, optimizer, scheduler)
                # warm-up, 2 steps: oneDNN picks its kernels for this size and precision
                train_one_epoch(step, EpochData(films[size][:64], labels[:64], weights), config, 0, device)
                began = time.perf_counter()
                train_one_epoch(step, EpochData(films[size], labels, weights), config, 0, device)
                timings.setdefault(f"train_{size}_{precision}", []).append(n_films / (time.perf_counter() - began))
        model, _ = build_model("none", seed=0)
        model = model.eval().to(memory_format=torch.channels_last)
        for precision in ("fp32", "bf16"):
            cam = make_cam(model, "gradcam", batch_size=32)
            with autocast(resolve_precision(precision, device), device):
                cam(films[224][:32])
                began = time.perf_counter()
                cam(films[224])
            timings.setdefault(f"gradcam_224_{precision}", []).append(n_films / (time.perf_counter() - began))
    ceilings = {"fp32": matmul_tflops(torch.float32), "bf16": matmul_tflops(torch.bfloat16)}
    figures: dict = {k: statistics.median(v) for k, v in timings.items()}
    figures |= {f"{k}_all_rounds": v for k, v in timings.items()}
    for what in ("train_128", "train_224", "gradcam_224"):
        figures[f"{what}_bf16_over_fp32"] = figures[f"{what}_bf16"] / figures[f"{what}_fp32"]
    figures |= {
        "matmul_tflops_fp32": ceilings["fp32"],
        "matmul_tflops_bf16": ceilings["bf16"],
        "matmul_bf16_over_fp32": ceilings["bf16"] / ceilings["fp32"],
        "auto_resolves_to": resolve_precision("auto", device).to_dict(),
        "films_per_round": n_films,
        "rounds": rounds,
    }
    # each speed-up against what the hardware's matmul gains from bf16 (1.0: the model gains all of it)
    for what in ("train_128", "train_224", "gradcam_224"):
        figures[f"{what}_ratio_over_matmul_ratio"] = (
            figures[f"{what}_bf16_over_fp32"] / figures["matmul_bf16_over_fp32"]
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--films", type=int, default=128)
    parser.add_argument("--record-dir", type=Path, default=None)
    args = parser.parse_args()
    figures = measure(args.rounds, args.films)
    print(json.dumps({k: v for k, v in figures.items() if not k.endswith("_all_rounds")}, indent=2))
    path = write_record(
        "precision",
        figures,
        note="images per second of pneumocam's train_one_epoch (full mode, augmentation, batch 32) and Grad-CAM "
        "(batch 32), fp32 and bf16 rounds alternating in one process; matmul: 2048x2048, best of 5",
        out=args.record_dir,
    )
    print(f"record: {path}")


if __name__ == "__main__":
    main()
