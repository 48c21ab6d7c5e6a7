"""Ablation of the scratch recipe on a class-balanced subset of Kermany train (a benchmark, not a test).

Each variant changes one setting of `--recipe scratch`; all share the data, the subset, the validation split
and the seed, and are compared on validation (ROC-AUC, accuracy at 0.5, ECE before and after temperature
scaling) of the epoch each selects. Subset runs only rank the variants; the full recipe is measured with
`pneumocam run --recipe scratch --eval-split heldout`.

    python benchmarks/ablation.py --data ../shared/data/kermany224 --max-per-class 500 [--variants base,no_augment]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

VARIANTS = {
    "base": {},
    "no_augment": {"augment": False},
    "constant_lr": {"schedule": "constant"},
    "all_128_then_224_twice": {"epochs": 6, "size_schedule": "128:4,224:2"},
}


def main() -> None:
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit
    from pneumocam.train.recipes import recipe_defaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-per-class", type=int, default=500)
    parser.add_argument("--variants", default="base,no_augment")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    rows = {}
    for name in args.variants.split(","):
        settings = recipe_defaults("scratch") | VARIANTS[name] | {"recipe": "scratch"}
        config = TrainConfig(data=args.data, max_per_class=args.max_per_class, **settings)
        began = time.perf_counter()
        run = fit(config, runs_dir=args.out / "ablation-runs")
        seconds = time.perf_counter() - began
        _, meta = load_checkpoint(run / "model.pt")
        rows[name] = {
            "changed": VARIANTS[name],
            "seconds": seconds,
            "best_epoch": meta["epoch"],
            "val_auc": meta["val_metrics"]["val_auc"],
            "val_acc": meta["val_metrics"]["val_acc"],
            "ece_before": meta["calibration"]["ece_before"],
            "ece_after": meta["calibration"]["ece_after"],
            "run": str(run),
        }
        print(
            f"{name:<26} AUC {rows[name]['val_auc']:.4f}  acc {rows[name]['val_acc']:.3f}  "
            f"ECE {rows[name]['ece_before']:.3f} -> {rows[name]['ece_after']:.3f}  ({seconds / 60:.1f} min)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ablation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"data": args.data, "max_per_class": args.max_per_class, "variants": rows}, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
