"""Which guard (model/guard.py) flags a second population and passes the model's own held-out patients: each
candidate fitted on one model's training films and thresholded on its validation films (95% pass), its share flagged
on the held-out Kermany patients and on all 1,000 nih-adult films (a benchmark, not a test).

    python benchmarks/guard_parts.py RUN/train/model.pt [MORE/model.pt ...] [--record guard-parts]

Candidates: layer2's pooled features (format 2), layer1's moments + the 8 x 8 thumbnail by Mahalanobis distance
(format 3), the same two parts by the distance to the 5th nearest training film, columns standardised (format 4,
GUARD_PARTS) or layer1's rows at unit length (Sun et al. 2022's scaling). The first checkpoint is where the choice was
made; each further one is a check of that choice on a model it was not made on. Exits 1 when a model cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.core.errors import PneumocamError  # noqa: E402
from pneumocam.data import discover, load_images, prepare_data  # noqa: E402
from pneumocam.model.forward import forward_pass  # noqa: E402
from pneumocam.model.guard import GUARD_PARTS  # noqa: E402
from pneumocam.model.inputs import ModelInputs  # noqa: E402
from pneumocam.model.network import pooled_columns, resolve_device  # noqa: E402
from pneumocam.model.session import InferenceSession  # noqa: E402
from pneumocam.pipeline.config import evaluated_samples  # noqa: E402
from pneumocam.train.config import TrainConfig  # noqa: E402
from pneumocam.train.guard_fit import fit_combined_guard, fit_guard, fit_neighbour_guard  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def candidates(train, labels, val, columns) -> dict:
    """name: a fitted guard, each thresholded on `val`."""
    l1, thumb = columns["layer1 moments"], columns["thumbnail"]
    declared = [fit_neighbour_guard(train, val, s, k, columns=columns[n], depth=n) for n, (s, k) in GUARD_PARTS.items()]
    return {
        "format 2: layer2 pooled, Mahalanobis": fit_guard(train, labels, val, columns=columns["layer2"]),
        "format 3: layer1 moments + thumbnail (20 axes), Mahalanobis": fit_combined_guard(
            [fit_guard(train, labels, val, columns=l1), fit_guard(train, labels, val, columns=thumb, components=20)],
            val,
        ),
        "format 4 (declared): layer1 moments + thumbnail, 5th nearest, standardised": fit_combined_guard(declared, val),
        "layer1 moments at unit length + thumbnail standardised, 5th nearest": fit_combined_guard(
            [fit_neighbour_guard(train, val, "unit length", 5, columns=l1), declared[1]], val
        ),
    }


def measure(checkpoint: Path, kermany: Path, nih: Path, device) -> dict:
    session = InferenceSession.open(checkpoint, device)
    model, meta = session.model, session.meta
    config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in TrainConfig.__dataclass_fields__})
    prepared, _ = ModelInputs.of_training(config).prepared(prepare_data(config))

    def features(images, name):
        return forward_pass(model, images, 64, device, description=f"Features ({name})", logits=False, features=True)[1]

    sets = {
        "kermany_heldout": evaluated_samples(discover(kermany), "heldout", meta, checkpoint),
        "nih_adult": discover(nih).samples,
    }
    tested = {
        name: features(session.reads.inputs(load_images(samples, session.reads.image_size)).images, name)
        for name, samples in sets.items()
    }
    train, val = features(prepared.train.images, "train"), features(prepared.val.images, "val")
    found = candidates(train, prepared.train.labels, val, pooled_columns(model))
    return {
        "checkpoint": str(checkpoint),
        "recipe": config.recipe,
        "schedule": config.size_schedule,
        "max_per_class": config.max_per_class,
        "seed": config.seed,
        "n_films": {"train": len(train), "val": len(val)} | {n: len(x) for n, x in tested.items()},
        "share_flagged": {
            name: {n: float(np.mean(guard.distances(x) > guard.threshold)) for n, x in tested.items()}
            for name, guard in found.items()
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--kermany", type=Path, default=SHARED / "kermany224")
    parser.add_argument("--nih", type=Path, default=SHARED / "nih-adult" / "manifest.csv")
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    args = parser.parse_args(argv)
    stamped = stamp()
    device = resolve_device("auto")
    models = []
    for checkpoint in args.checkpoints:
        try:
            models.append(measure(checkpoint, args.kermany, args.nih, device))
        except PneumocamError as exc:
            print(f"cannot measure {checkpoint}: {exc}", file=sys.stderr)
            return 1
        for name, shares in models[-1]["share_flagged"].items():
            print(f"{name:<80} held-out {shares['kermany_heldout']:.1%}  nih-adult {shares['nih_adult']:.1%}")
    if args.record:
        note = "the first model is where the guard was chosen; the others check the choice on models it was not made on"
        write_record(args.record, {"models": models}, note=note, stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
