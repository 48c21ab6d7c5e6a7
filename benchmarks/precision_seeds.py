"""Is bf16 training as good as fp32? Two seeds of each on a reduced `scratch` schedule (a benchmark, not a test):
the validation AUC of bf16 against the seed-to-seed spread of fp32, and the training speed of both.

    python benchmarks/precision_seeds.py --data ../shared/data/kermany224 [--per-class 400] [--schedule 128:3]

The runs alternate (fp32 seed 0, bf16 seed 0, fp32 seed 1, bf16 seed 1), so both precisions see the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--schedule", default="128:3")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--record-dir", type=Path, default=None)
    args = parser.parse_args()

    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit
    from pneumocam.train.recipes import recipe_defaults

    settings = recipe_defaults("scratch")
    settings |= {"size_schedule": args.schedule, "epochs": sum(int(p.split(":")[1]) for p in args.schedule.split(","))}
    settings["image_size"] = int(args.schedule.split(",")[-1].split(":")[0])
    rows = []
    with tempfile.TemporaryDirectory(prefix="pneumocam-precision-") as runs:
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                config = TrainConfig(
                    data=args.data, max_per_class=args.per_class, seed=seed, precision=precision, **settings
                )
                began = time.perf_counter()
                run = fit(config, runs_dir=runs)
                seconds = time.perf_counter() - began
                summary = json.loads((run / "train_summary.json").read_text())
                best = summary["history"][summary["best_epoch"] - 1]
                train_seconds = sum(r["seconds"] for r in summary["history"])
                rows.append(
                    {
                        "precision": precision,
                        "seed": seed,
                        "best_epoch": summary["best_epoch"],
                        "val_auc": best["val_auc"],
                        "val_acc": best["val_acc"],
                        "epochs_seconds": train_seconds,
                        "fit_seconds": seconds,
                        "history_val_auc": [r["val_auc"] for r in summary["history"]],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    by = {p: [r for r in rows if r["precision"] == p] for p in ("fp32", "bf16")}
    fp32_aucs, bf16_aucs = [r["val_auc"] for r in by["fp32"]], [r["val_auc"] for r in by["bf16"]]
    figures = {
        "runs": rows,
        "fp32_val_auc_range": [min(fp32_aucs), max(fp32_aucs)],
        "bf16_val_auc_range": [min(bf16_aucs), max(bf16_aucs)],
        "fp32_seed_spread": max(fp32_aucs) - min(fp32_aucs),
        "bf16_mean_minus_fp32_mean": sum(bf16_aucs) / len(bf16_aucs) - sum(fp32_aucs) / len(fp32_aucs),
        "epochs_seconds_fp32_over_bf16": sum(r["epochs_seconds"] for r in by["fp32"])
        / sum(r["epochs_seconds"] for r in by["bf16"]),
        "per_class": args.per_class,
        "schedule": args.schedule,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "runs"}, indent=2))
    note = (
        f"recipe scratch with --max-per-class {args.per_class} --size-schedule {args.schedule}; validation: "
        "the carved patient-grouped split of those films"
    )
    print(f"record: {write_record('precision-seeds', figures, note=note, out=args.record_dir)}")


if __name__ == "__main__":
    main()
