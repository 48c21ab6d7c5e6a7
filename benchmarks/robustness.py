"""Does a trained model generalise beyond its exact inputs? Two measurements for a checkpoint (a benchmark, not a test).

1. Resolution: the full-resolution originals in kermany-fullres-sample against their 224 px copies in kermany224
   (same films): probabilities and decisions must agree.
2. Acquisition changes on the held-out patients the checkpoint recorded: contrast, gamma, blur and noise,
   each mild; accuracy at the recorded threshold and ROC-AUC against the clean films.

    python benchmarks/robustness.py --checkpoint RUN/train/model.pt --data ../shared/data/kermany224 \
        --fullres ../shared/data/kermany-fullres-sample

Prints a table and writes bench-results/robustness-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def perturbations(seed: int = 0) -> dict:
    """name -> function(uint8 (N, S, S)) -> uint8: mild changes a different X-ray unit or export could make."""
    import cv2

    rng = np.random.default_rng(seed)

    def contrast(x, factor):
        mean = x.reshape(len(x), -1).mean(axis=1)[:, None, None]
        return np.clip((x - mean) * factor + mean, 0, 255).astype(np.uint8)

    def gamma(x, g):
        return np.clip(255.0 * (x / 255.0) ** g, 0, 255).astype(np.uint8)

    return {
        "clean": lambda x: x,
        "contrast x0.8": lambda x: contrast(x.astype(np.float64), 0.8),
        "contrast x1.2": lambda x: contrast(x.astype(np.float64), 1.2),
        "gamma 0.8": lambda x: gamma(x.astype(np.float64), 0.8),
        "gamma 1.25": lambda x: gamma(x.astype(np.float64), 1.25),
        "blur sigma 1 px": lambda x: np.stack([cv2.GaussianBlur(im, (0, 0), 1.0) for im in x]),
        "noise sigma 5": lambda x: np.clip(x + rng.normal(0, 5, x.shape), 0, 255).astype(np.uint8),
    }


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from pneumocam.core.provenance import library_versions
    from pneumocam.data import discover, load_images
    from pneumocam.data.readers import read_resized
    from pneumocam.evaluation.evaluate import checkpoint_thresholds
    from pneumocam.model.forward import predict_logits
    from pneumocam.model.network import load_checkpoint, probability
    from pneumocam.pipeline.config import evaluated_samples

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--fullres", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, meta = load_checkpoint(args.checkpoint)
    size = int(meta["image_size"])
    thresholds, _ = checkpoint_thresholds(meta)
    threshold = thresholds.get("threshold_youden_val", 0.5)
    result = {
        "checkpoint": str(args.checkpoint),
        "threshold": threshold,
        "image_size": size,
        "versions": library_versions(),
        "weights": meta.get("weights"),
        "recipe": (meta.get("config") or {}).get("recipe"),
    }

    if args.fullres and args.fullres.is_dir():
        pairs = []
        for original in sorted(args.fullres.glob("*/*/*.jpeg")):
            copy = args.data / original.relative_to(args.fullres)
            if copy.is_file():
                pairs.append((original, copy))
        big = np.stack([read_resized(o, size) for o, _ in pairs])
        small = np.stack([read_resized(c, size) for _, c in pairs])
        p_big = probability(predict_logits(model, big, 16))
        p_small = probability(predict_logits(model, small, 16))
        result["full_resolution"] = {
            "n_pairs": len(pairs),
            "max_abs_probability_difference": float(np.abs(p_big - p_small).max()),
            "mean_abs_probability_difference": float(np.abs(p_big - p_small).mean()),
            "decisions_agree": int(((p_big >= threshold) == (p_small >= threshold)).sum()),
            "note": "these films come from the train split: agreement is the measure here, not accuracy",
        }

    samples = evaluated_samples(discover(args.data), "heldout", meta, args.checkpoint)
    loaded = load_images(samples, size, description="Reading held-out patients")
    images, labels = np.asarray(loaded.images), loaded.labels
    rows = {}
    for name, change in perturbations().items():
        began = time.perf_counter()
        probs = probability(predict_logits(model, change(images), 32, description=name))
        rows[name] = {
            "accuracy": float(np.mean((probs >= threshold) == labels)),
            "roc_auc": float(roc_auc_score(labels, probs)),
            "seconds": time.perf_counter() - began,
        }
    clean = rows["clean"]["accuracy"]
    for row in rows.values():
        row["accuracy_drop_points"] = 100 * (clean - row["accuracy"])
    result["held_out"] = {
        "n_images": len(labels),
        "perturbations": rows,
        "worst_drop_points": max(r["accuracy_drop_points"] for r in rows.values()),
    }

    print(f"checkpoint {args.checkpoint} (threshold {threshold:.3f}, {size} px)")
    if "full_resolution" in result:
        fr = result["full_resolution"]
        print(
            f"full resolution vs 224 px copies: {fr['decisions_agree']}/{fr['n_pairs']} decisions agree, "
            f"max |dp| {fr['max_abs_probability_difference']:.3f}"
        )
    print(f"{'held-out, ' + str(len(labels)) + ' films':<24}{'accuracy':>10}{'drop (pts)':>12}{'ROC-AUC':>10}")
    for name, row in rows.items():
        print(f"{name:<24}{row['accuracy']:>10.3f}{row['accuracy_drop_points']:>12.1f}{row['roc_auc']:>10.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"robustness-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
