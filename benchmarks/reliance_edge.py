"""How much of the decision-reliance check's answer lies in the lungs' edge: the check again on a run's evaluated
films with the lung masks shrunk or grown before the feathered removal (a benchmark, not a test).

The check (analysis/reliance.py) feathers the lung mask across its edge (sigma 2% of the side), so "lungs removed"
keeps a faded rim of lung tissue and "only the lungs" fades a rim of it away. Here the mask is first eroded or
dilated by SHIFT pixels (default: twice the feather's sigma, where its weight is about 2%): with the mask grown,
"lungs removed" removes every lung pixel (and a band outside); with it shrunk, "only the lungs" keeps no pixel
outside them (and loses a band inside).

    python benchmarks/reliance_edge.py RUN_FOLDER [--record NAME]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402


def main() -> None:
    from pneumocam.analysis.reliance import FEATHER, FILL_GREY, film_lungs, reliance_probabilities, reliance_summary
    from pneumocam.core.precision import autocast, resolve_precision
    from pneumocam.data import discover, load_images
    from pneumocam.model.inputs import ModelInputs
    from pneumocam.model.network import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--record", default=None)
    parser.add_argument("--shift", type=int, default=None, help="Pixels to erode / dilate (default: 2 sigma).")
    parser.add_argument("--masks", nargs="+", default=["eroded", "as_is", "dilated"], help="Which masks to try.")
    args = parser.parse_args()

    results = json.loads((args.run / "results.json").read_text())
    config = results["config"]
    model, meta = load_checkpoint(args.run / "train" / "model.pt")
    with open(args.run / "predictions.csv", newline="") as f:
        wanted = {row["path"] for row in csv.DictReader(f)}
    samples = [s for s in discover(config["train"]["data"]).samples if s.path in wanted]
    size = int(meta.get("image_size", 224))
    films = load_images(samples, size, use_cache=False)
    lung_root = config["masks"].get("lungs")
    lungs, _ = film_lungs(films, lung_root, config.get("lung_model"))
    shift = args.shift if args.shift is not None else round(2 * FEATHER * size)
    patients = [s.patient_id for s in films.samples]
    reads = ModelInputs.of_checkpoint(meta)
    figures = {"n_films": len(samples), "shift_px": shift, "fill_grey": FILL_GREY, "masks": {}}
    precision = resolve_precision("auto", "cpu")
    shifted = {
        "eroded": lambda: np.stack([binary_erosion(m, iterations=shift) for m in lungs]),
        "as_is": lambda: lungs,
        "dilated": lambda: np.stack([binary_dilation(m, iterations=shift) for m in lungs]),
    }
    for name in args.masks:
        masks = shifted[name]()
        with autocast(precision, "cpu"):
            probs = reliance_probabilities(model, reads, films, masks, 32, "cpu", lung_masks=lung_root)
        summary = reliance_summary(probs, films.labels, patients, n_resamples=1000, seed=0)
        figures["masks"][name] = {
            "roc_auc": {k: v["roc_auc"] for k, v in summary["variants"].items()},
            "roc_auc_ci95": {k: v["roc_auc_ci95"] for k, v in summary["variants"].items()},
            "verdict": summary["verdict"],
        }
        print(name, {k: round(v, 3) for k, v in figures["masks"][name]["roc_auc"].items()}, summary["verdict"])
    figures["run"] = str(args.run)
    figures["recipe"] = config["train"].get("recipe")
    figures["focus"] = reads.focus
    if args.record:
        note = f"the {figures['recipe']} run's model, bf16, its evaluated films"
        print(f"record: {write_record(args.record, figures, note=note)}")


if __name__ == "__main__":
    main()
