"""The shortcut phantom as a known-answer check of --focus and --attention-penalty (a benchmark, not a test).

Phantoms whose corner marker follows the label (on 95% of PNEUMONIA films and 5% of NORMAL ones) train models that
differ only in --focus (none, body) or in the attention penalty (--variants). Each is evaluated on fresh phantoms
with the same marker rule and on the same phantoms with the marker flipped against the label (on 5% of PNEUMONIA,
95% of NORMAL: drawn from the same seed, so each flipped film equals its unflipped twin except for the marker). A
model that reads the marker loses its AUC on the flipped set; one that cannot see it keeps it.

    python benchmarks/shortcut.py [--size 96] [--epochs 8] [--per-class 250] [--out bench-results]
    python benchmarks/shortcut.py --variants attention attention-input [--penalty 1.0]   # the attention penalty
    python benchmarks/shortcut.py --checkpoints A/model.pt B/model.pt   # evaluate models it trained before
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def evaluate_both(model, focus: str, row: dict, marked, flipped, size: int) -> None:
    """Test AUC with the marker following the label and flipped against it, on the same films."""
    from sklearn.metrics import roc_auc_score

    from pneumocam.anatomy.focus import focus_images
    from pneumocam.data import discover, load_images
    from pneumocam.evaluation.evaluate import predict

    for name, data in (("marker_follows_label", marked), ("marker_flipped", flipped)):
        loaded = load_images(discover(data.images).split("test"), size, use_cache=False)
        if focus != "none":
            loaded = focus_images(loaded, focus).inputs(loaded)
        predictions = predict(model, loaded)
        row[f"test_auc_{name}"] = float(roc_auc_score(predictions.labels, predictions.probs))
    row["auc_drop_when_flipped"] = row["test_auc_marker_follows_label"] - row["test_auc_marker_flipped"]


def main() -> None:
    from pneumocam.core.provenance import library_versions
    from pneumocam.data.phantoms import write_phantom_dataset
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--shortcut", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--checkpoints", nargs="*", help="Evaluate these (trained by this script) instead of training.")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=["none", "body"],
        help="Models to train: none, body (--focus), attention / attention-input (no focus, --attention-penalty on "
        "the Grad-CAM map / on the input gradient, with the lung masks).",
    )
    parser.add_argument("--penalty", type=float, default=1.0, help="--attention-penalty of the attention variant.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pneumocam-shortcut-"))
    counts = {"train": args.per_class, "val": max(20, args.per_class // 5), "test": 100}
    marked = write_phantom_dataset(work / "marked", counts, args.size, args.seed, args.shortcut)
    flipped = write_phantom_dataset(work / "flipped", counts, args.size, args.seed, 1.0 - args.shortcut)
    results = {
        "settings": vars(args) | {"out": str(args.out), "counts": counts},
        "versions": library_versions(),
        "models": {},
    }
    for variant in args.variants if not args.checkpoints else [None] * len(args.checkpoints):
        began = time.perf_counter()
        penalised = variant in ("attention", "attention-input")
        focus = None if variant is None else ("none" if penalised else variant)
        if focus is None:
            checkpoint = Path(args.checkpoints[len(results["models"])])
            model, meta = load_checkpoint(checkpoint)
            focus = meta.get("focus", "none")
            row = {"checkpoint": str(checkpoint), "val_auc": meta["val_metrics"]["val_auc"]}
            evaluate_both(model, focus, row, marked, flipped, args.size)
            results["models"][f"focus_{focus}"] = row
            print(focus, json.dumps(row), flush=True)
            continue
        config = TrainConfig(
            data=str(marked.images),
            mode="full",
            weights="none",
            epochs=args.epochs,
            image_size=args.size,
            lr=1e-3,
            val_source="dataset",
            seed=args.seed,
            use_cache=False,
            focus=focus,
            attention_penalty=args.penalty if penalised else 0.0,
            attention_masks=str(marked.lung_masks) if penalised else None,
            attention_on="input" if variant == "attention-input" else "gradcam",
        )
        run = fit(config, runs_dir=work / "runs")
        model, meta = load_checkpoint(run / "model.pt")
        row = {"train_seconds": round(time.perf_counter() - began, 1), "val_auc": meta["val_metrics"]["val_auc"]}
        row["checkpoint"] = str(run / "model.pt")
        evaluate_both(model, focus, row, marked, flipped, args.size)
        if penalised:
            row["train_outside_lungs_share_by_epoch"] = [
                round(r["train_outside_lungs_share"], 3) for r in json.loads((run / "history.json").read_text())
            ]
        results["models"][variant.replace("-", "_") if penalised else f"focus_{focus}"] = row
        print(variant, json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "shortcut.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
