"""Grad-CAM in bf16 against fp32 on real films (a benchmark, not a test): do the maps, the probabilities and the
region shares stay the same when the forward pass runs under bf16 autocast?

For N films of a split (reference lung masks where the dataset has them): Spearman's rho between the fp32 and
bf16 raw maps of each film, the largest difference in each region share, the largest probability difference and
the number of decisions at the model's threshold that change.

    python benchmarks/precision_maps.py --checkpoint RUN/train/model.pt --data ../shared/data/kermany224 \
        --lung-masks ../shared/data/kermany224-lungmasks [--films 128]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--lung-masks", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--films", type=int, default=128)
    parser.add_argument("--record-dir", type=Path, default=None)
    args = parser.parse_args()

    from pneumocam.analysis.regions import attention_measures
    from pneumocam.core.precision import autocast, resolve_precision
    from pneumocam.core.schema import REGIONS
    from pneumocam.data import discover, load_images
    from pneumocam.data.masks import load_masks
    from pneumocam.evaluation.evaluate import decision_threshold
    from pneumocam.explain.cam import make_cam, upsample
    from pneumocam.model.network import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint)
    model = model.to(memory_format=torch.channels_last)
    size = int(meta["image_size"])
    samples = discover(args.data).split("train")
    picks = sorted(np.random.default_rng(0).choice(len(samples), args.films, replace=False))
    loaded = load_images([samples[i] for i in picks], size, use_cache=False)
    masks, found = load_masks(args.lung_masks, loaded.samples, size)
    results = {}
    for name in ("fp32", "bf16"):
        with autocast(resolve_precision(name, "cpu"), "cpu"):
            results[name] = make_cam(model, "gradcam", batch_size=32)(loaded.images, target="pred")
    fp32, bf16 = results["fp32"], results["bf16"]
    rho = [
        st.spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(fp32.maps, bf16.maps) if np.ptp(a) and np.ptp(b)
    ]
    measures = {k: attention_measures(upsample(r.maps, size), loaded.images, masks, found) for k, r in results.items()}
    share_diff = {
        region: float(np.nanmax(np.abs(measures["fp32"].shares[region] - measures["bf16"].shares[region])))
        for region in REGIONS
    }
    threshold = decision_threshold(meta)[0]
    figures = {
        "films": len(loaded.samples),
        "films_with_reference_lungs": int(found.sum()),
        "spearman_raw_maps_median": float(np.median(rho)),
        "spearman_raw_maps_min": float(np.min(rho)),
        "spearman_raw_maps_p05": float(np.quantile(rho, 0.05)),
        "largest_region_share_difference": share_diff,
        "largest_probability_difference": float(np.max(np.abs(fp32.probs - bf16.probs))),
        "decisions_changed_at_threshold": int(np.sum((fp32.probs >= threshold) != (bf16.probs >= threshold))),
        "threshold": threshold,
        "checkpoint": args.checkpoint,
        "split": "train films (random draw, seed 0)",
    }
    print(json.dumps(figures, indent=2))
    note = "Grad-CAM (layer4, predicted class) of the same films under fp32 and under bf16 autocast"
    print(f"record: {write_record('precision-maps', figures, note=note, out=args.record_dir)}")


if __name__ == "__main__":
    main()
