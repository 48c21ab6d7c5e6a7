"""Seed repeatability of the maps: two models of one recipe trained with different seeds (the same split seed, so
the same held-out patients), each method's maps of the same held-out films compared film by film
(analysis.trust.map_similarity: Spearman of the raw maps, SSIM of the normalised maps), beside the first step of the
randomisation cascade (the head re-initialised) for scale.

    python benchmarks/seed_repeatability.py A/train/model.pt B/train/model.pt [--films 60] [--record NAME]

Exits 1 when the two models do not share their held-out patients (different split seeds or data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.analysis.trust import map_similarity, randomisation_test  # noqa: E402
from pneumocam.data import discover, load_images  # noqa: E402
from pneumocam.data.split import balanced_indices  # noqa: E402
from pneumocam.explain.cam import METHODS, make_cam  # noqa: E402
from pneumocam.model.network import resolve_device  # noqa: E402
from pneumocam.model.session import InferenceSession  # noqa: E402
from pneumocam.pipeline.config import evaluated_samples  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--data", type=Path, default=SHARED / "kermany224")
    parser.add_argument("--films", type=int, default=60)
    parser.add_argument("--methods", default=",".join(m for m in METHODS if m != "scorecam"))
    parser.add_argument("--record", default=None)
    args = parser.parse_args(argv)
    stamped = stamp()
    device = resolve_device("auto")
    sessions = [InferenceSession.open(path, device) for path in (args.first, args.second)]
    index = discover(args.data)
    held = [evaluated_samples(index, "heldout", s.meta, path) for s, path in zip(sessions, (args.first, args.second))]
    if {s.path for s in held[0]} != {s.path for s in held[1]}:
        print("the two models hold out different films: train them with the same --split-seed", file=sys.stderr)
        return 1
    labels = np.array([s.label for s in held[0]])
    chosen = [held[0][i] for i in balanced_indices(labels, args.films // 2, 0)]
    loaded = load_images(chosen, sessions[0].reads.image_size, description="Reading held-out films")
    size = loaded.images.shape[-1]
    seeds = [s.meta["config"].get("seed") for s in sessions]
    figures = {"films": len(chosen), "target": "the film's label", "seeds": seeds, "methods": {}}
    for method in args.methods.split(","):
        maps = [make_cam(s.model, method, batch_size=32)(loaded.images, "true", loaded.labels).maps for s in sessions]
        between = map_similarity(maps[0], maps[1], size)
        head = randomisation_test(
            sessions[0].model, loaded.images[:8], loaded.labels[:8], method, reference=maps[0][:8]
        )
        figures["methods"][method] = {
            "between_seeds": {k: between[k] for k in ("spearman_mean", "ssim_mean")},
            "head_randomised": {k: head["cascade"][0][k] for k in ("spearman_mean", "ssim_mean")},
        }
        print(method, figures["methods"][method])
    if args.record:
        note = "two seeds of one recipe, the same split seed; held-out films, class-balanced"
        write_record(args.record, figures, note=note, stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
