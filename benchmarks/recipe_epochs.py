"""Where a recipe's training time goes on this machine, on the real data path (a benchmark, not a test): the
`scratch` and `recommended` recipes with fewer films and a short schedule, one after the other in one process, each
timed from the call to model.pt: preparing the films (reading the cache, focusing), each epoch's seconds, images per
second and CPU utilisation (this process's CPU time / wall / cores, train/fit.py's history), and the rest (the
guard's fit, writing the folder).

    python benchmarks/recipe_epochs.py [--max-per-class 300] [--schedule 128:1,224:1] [--record recipe-epochs]

Each recipe's whole schedule on every film is then projected from those rates (a projection, labelled so: each
epoch's training and validating seconds per film at its size, times the full recipe's films and epochs at that
size; preparing and the guard's fit per film, times all films), so the README can say what each minute of a full
recipe on this machine is spent on without training it for hours.

Run it with nothing else on the machine: its figures are times. Exits 1 when a training run fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.core.errors import PneumocamError  # noqa: E402
from pneumocam.data.discover import discover  # noqa: E402
from pneumocam.data.prepare import planned_split  # noqa: E402
from pneumocam.pipeline.config import DEFAULT_HOLDOUT_FRACTION  # noqa: E402
from pneumocam.train.config import TrainConfig  # noqa: E402
from pneumocam.train.fit import fit  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed_recipe(recipe: str, data: Path, max_per_class: int, schedule: str, runs: Path) -> dict:
    epochs = sum(int(part.split(":")[1]) for part in schedule.split(","))
    config = TrainConfig.from_recipe(
        recipe, data=str(data), max_per_class=max_per_class, size_schedule=schedule, epochs=epochs, seed=0
    )
    began = time.perf_counter()
    run = fit(config, runs_dir=runs)
    wall = time.perf_counter() - began
    history = json.loads((run / "history.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())
    n_train = summary["validation"]["n_train_used"]
    epochs_s = sum(row["seconds"] for row in history)
    return {
        "recipe": recipe,
        "focus": config.focus,
        "n_train": n_train,
        "n_val": summary["validation"]["n_val_used"],
        "wall_s": wall,
        "epochs_s": epochs_s,
        "outside_epochs_s": wall - epochs_s,
        "timings": summary.get("timings_this_session"),
        "epochs": [
            {
                "image_size": row["image_size"],
                "seconds": row["seconds"],
                "train_seconds": row["train_seconds"],
                "cpu_utilisation": row.get("cpu_utilisation"),
                "train_films_per_epoch_s": n_train / row["seconds"],  # the epoch's seconds include validating
                "val_auc": row.get("val_auc"),
            }
            for row in history
        ],
    }


def full_recipe_films(recipe: str, data: Path, holdout_fraction: float) -> tuple[int, int]:
    """The training and validation films of the whole recipe on `data` (its validation plan, every film, after the
    held-out patients `run --eval-split heldout` sets aside)."""
    config = TrainConfig.from_recipe(recipe, data=str(data), holdout_fraction=holdout_fraction)
    train, val, _ = planned_split(config, discover(config.data))
    return len(train), len(val)


def projected_minutes(measured: dict, recipe: str, data: Path, holdout_fraction: float) -> dict:
    """The whole recipe's minutes per part on this machine, from the cut run's rates (seconds per film)."""
    n_train, n_val = full_recipe_films(recipe, data, holdout_fraction)
    sizes = TrainConfig.from_recipe(recipe, data=str(data)).sizes
    rate = {e["image_size"]: e for e in measured["epochs"]}
    missing = sorted(set(sizes) - set(rate))
    if missing:
        raise SystemExit(f"{recipe}: the cut schedule did not train at {missing} px, which the recipe uses")
    films, cut_films = n_train + n_val, measured["n_train"] + measured["n_val"]
    guard_s = measured["timings"]["guard_fit_s"]
    parts = {}
    for size in sorted(set(sizes)):
        epochs, e = sizes.count(size), rate[size]
        parts[f"training, {epochs} epochs at {size} px"] = epochs * e["train_seconds"] / measured["n_train"] * n_train
        parts[f"validating, {epochs} epochs at {size} px"] = (
            epochs * (e["seconds"] - e["train_seconds"]) / measured["n_val"] * n_val
        )
    parts["the guard's fit"] = guard_s / cut_films * films
    parts["preparing and writing"] = (measured["outside_epochs_s"] - guard_s) / cut_films * films
    minutes = {name: seconds / 60 for name, seconds in parts.items()}
    return {
        "n_train": n_train,
        "n_val": n_val,
        "holdout_fraction": holdout_fraction,
        "schedule": sizes,
        "minutes": minutes,
        "total_min": sum(minutes.values()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "kermany224")
    parser.add_argument("--max-per-class", type=int, default=300)
    parser.add_argument("--schedule", default="128:1,224:1")
    parser.add_argument("--recipes", default="scratch,recommended")
    parser.add_argument(
        "--holdout-fraction",
        type=float,
        default=DEFAULT_HOLDOUT_FRACTION,
        help="The projection's held-out share of patients (the README's `run --eval-split heldout`).",
    )
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    args = parser.parse_args(argv)
    stamped = stamp()
    found = []
    with tempfile.TemporaryDirectory(prefix="recipe-epochs-") as runs:
        for recipe in args.recipes.split(","):
            try:
                found.append(timed_recipe(recipe, args.data, args.max_per_class, args.schedule, Path(runs)))
            except PneumocamError as exc:
                print(f"{recipe}: {exc}", file=sys.stderr)
                return 1
            row = found[-1]
            epochs = ", ".join(
                f"{e['image_size']} px {e['seconds']:.0f} s ({e['cpu_utilisation']:.0%} CPU)" for e in row["epochs"]
            )
            print(
                f"{recipe}: {row['wall_s']:.0f} s in all, epochs {epochs}; outside epochs "
                f"{row['outside_epochs_s']:.0f} s"
            )
            row["projected_whole_recipe"] = projected_minutes(row, recipe, args.data, args.holdout_fraction)
            print(f"{recipe}, the whole recipe projected: {row['projected_whole_recipe']['total_min']:.0f} min")
    if args.record:
        figures = {"max_per_class": args.max_per_class, "schedule": args.schedule, "recipes": found}
        write_record(
            args.record, figures, note="one process, recipes in turn, seed 0; nothing else running", stamped=stamped
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
