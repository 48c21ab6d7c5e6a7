"""Which explanation methods track what the decision does, for one model: per method (and occlusion), the Spearman
correlation over films between the map's lung share and the explained class's probability drop when the lungs are
removed (analysis.reliance.map_agreement), on a class-balanced sample of the model's held-out films with lung masks;
with the reliance check on the same films (analysis.reliance.reliance_check: the lungs removed, the shape-matched
control, the ROAD imputation, and the verdict).

    python benchmarks/map_agreement.py RUN/train/model.pt [--films 120] [--record map-agreement-scratch]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.analysis.regions import split_attention  # noqa: E402
from pneumocam.analysis.reliance import map_agreement, reliance_check  # noqa: E402
from pneumocam.data import discover, load_images  # noqa: E402
from pneumocam.data.masks import mask_path  # noqa: E402
from pneumocam.data.split import balanced_indices  # noqa: E402
from pneumocam.explain.cam import METHODS, make_cam  # noqa: E402
from pneumocam.explain.occlusion import occlusion_maps  # noqa: E402
from pneumocam.model.network import resolve_device  # noqa: E402
from pneumocam.model.session import InferenceSession  # noqa: E402
from pneumocam.pipeline.config import evaluated_samples  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=SHARED / "kermany224")
    parser.add_argument("--masks", type=Path, default=SHARED / "kermany224-lungmasks")
    parser.add_argument("--films", type=int, default=120)
    parser.add_argument("--methods", default=",".join(m for m in METHODS if m != "scorecam") + ",occlusion")
    parser.add_argument("--record", default=None)
    args = parser.parse_args(argv)
    stamped = stamp()
    session = InferenceSession.open(args.checkpoint, resolve_device("auto"))
    samples = evaluated_samples(discover(args.data), "heldout", session.meta, args.checkpoint)
    masked = [s for s in samples if mask_path(args.masks, s).is_file()]
    labels = np.array([s.label for s in masked])
    chosen = balanced_indices(labels, args.films // 2, 0)
    loaded = load_images([masked[i] for i in chosen], session.reads.image_size, description="Reading held-out films")
    reliance, probs = reliance_check(
        session.model, session.reads, loaded, str(args.masks), None, 32, session.device, 1000, 0
    )
    targets = loaded.labels  # every method explains the film's true class here
    seen = session.reads.read(loaded, str(args.masks))  # what the model reads (its --focus crop) and where it lies
    size = loaded.images.shape[-1]
    kept = reliance["share_of_ranking_kept"]
    figures = {
        "films": int(len(loaded.samples)),
        "target": "the film's label",
        "reliance": {
            "roc_auc": {name: v["roc_auc"] for name, v in reliance["variants"].items()},
            "share_of_ranking_kept": kept,
            "control_overlap_with_lungs": reliance["controls"]["mean_overlap_with_lungs"],
            "verdict": reliance["verdict"],
        },
        "methods": {},
    }
    print({name: round(v, 3) if v is not None else None for name, v in kept.items()}, reliance["verdict"])
    for method in args.methods.split(","):
        if method == "occlusion":
            maps = occlusion_maps(session.model, seen.images, loaded.labels, session.device)
        else:
            maps = make_cam(session.model, method, batch_size=32)(seen.images, "true", loaded.labels).maps
        maps = session.reads.on_film(maps, seen.boxes)  # a --focus model's maps put back where its crop lies
        columns, _, _ = split_attention(loaded, maps, size, loaded.labels, str(args.masks))
        figures["methods"][method] = map_agreement(columns["share_lungs"], probs, targets, method)
        found = figures["methods"][method]
        print(f"{method:<10} Spearman {found['spearman']}  p {found['p']}  tracks: {found['tracks']}")
    if args.record:
        write_record(args.record, figures, note="held-out films with lung masks, class-balanced", stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
