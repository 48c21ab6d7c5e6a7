"""The shortcut phantom as a known-answer check of --focus and --attention-penalty (a benchmark, not a test).

Phantoms whose marker follows the label (on 95% of PNEUMONIA films and 5% of NORMAL ones) train models that differ
only in --focus (none, body, lungs, lungs-only) or in the attention penalty (--variants). The marker sits in the
blank corner (`--marker corner`, which --focus body blanks) or on the body below the lungs (`--marker inside`,
which it cannot). Each model is evaluated on fresh phantoms with the same marker rule and on the same phantoms with
the marker flipped against the label (on 5% of PNEUMONIA, 95% of NORMAL: drawn from the same seed, so each flipped
film equals its unflipped twin except for the marker). A model that reads the marker loses its AUC on the flipped
set; one that cannot see it keeps it. On the marked test films each model also gets the decision-reliance check
(analysis/reliance: ROC-AUC with the lungs removed and with only the lungs kept), which reads no map.

    python benchmarks/shortcut.py [--marker inside] [--size 96] [--epochs 8] [--per-class 250] [--record NAME]
    python benchmarks/shortcut.py --variants attention attention-input [--penalty 1.0]   # the attention penalty
    python benchmarks/shortcut.py --checkpoints A/model.pt B/model.pt   # evaluate models it trained before
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def evaluate_both(model, meta: dict, row: dict, marked, flipped, size: int) -> None:
    """Test AUC with the marker following the label and flipped against it, on the same films, each read as the
    checkpoint reads a film (its --focus with the phantoms' lung masks); then the reliance check on the marked set."""
    from sklearn.metrics import roc_auc_score

    from pneumocam.analysis.reliance import film_lungs, reliance_probabilities, reliance_summary
    from pneumocam.data import discover, load_images
    from pneumocam.evaluation.evaluate import predict
    from pneumocam.model.inputs import ModelInputs

    reads = ModelInputs.of_checkpoint(meta)
    for name, data in (("marker_follows_label", marked), ("marker_flipped", flipped)):
        loaded = load_images(discover(data.images).split("test"), size, use_cache=False)
        predictions = predict(model, reads.inputs(loaded, lung_masks=str(data.lung_masks)))
        row[f"test_auc_{name}"] = float(roc_auc_score(predictions.labels, predictions.probs))
    row["auc_drop_when_flipped"] = row["test_auc_marker_follows_label"] - row["test_auc_marker_flipped"]
    films = load_images(discover(marked.images).split("test"), size, use_cache=False)
    lungs, _ = film_lungs(films, str(marked.lung_masks), None)
    probs = reliance_probabilities(model, reads, films, lungs, 32, "cpu", lung_masks=str(marked.lung_masks))
    summary = reliance_summary(probs, films.labels)
    row["reliance_roc_auc"] = {k: round(v["roc_auc"], 4) for k, v in summary["variants"].items()}
    row["reliance_roc_auc_ci95"] = {k: v["roc_auc_ci95"] for k, v in summary["variants"].items()}
    row["reliance_verdict"] = summary["verdict"]


def main() -> None:
    from pneumocam.anatomy.focus import LUNG_MODES
    from pneumocam.core.provenance import library_versions
    from pneumocam.data.phantoms import MARKER_PLACES, write_phantom_dataset
    from pneumocam.model.network import load_checkpoint
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--shortcut", type=float, default=0.95)
    parser.add_argument("--marker", choices=MARKER_PLACES, default="corner", help="Where the marker goes.")
    parser.add_argument("--record", help="Also write the result record benchmarks/results/NAME.json.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--checkpoints", nargs="*", help="Evaluate these (trained by this script) instead of training.")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=["none", "body"],
        help="Models to train: none, body, lungs, lungs-only (--focus), attention / attention-input (no focus, "
        "--attention-penalty on the Grad-CAM map / on the input gradient, with the lung masks).",
    )
    parser.add_argument("--penalty", type=float, default=1.0, help="--attention-penalty of the attention variant.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pneumocam-shortcut-"))
    counts = {"train": args.per_class, "val": max(20, args.per_class // 5), "test": 100}
    marked = write_phantom_dataset(work / "marked", counts, args.size, args.seed, args.shortcut, args.marker)
    flipped = write_phantom_dataset(work / "flipped", counts, args.size, args.seed, 1.0 - args.shortcut, args.marker)
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
            evaluate_both(model, meta, row, marked, flipped, args.size)
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
            focus_masks=str(marked.lung_masks) if focus in LUNG_MODES else None,
            attention_penalty=args.penalty if penalised else 0.0,
            attention_masks=str(marked.lung_masks) if penalised else None,
            attention_on="input" if variant == "attention-input" else "gradcam",
        )
        run = fit(config, runs_dir=work / "runs")
        model, meta = load_checkpoint(run / "model.pt")
        row = {"train_seconds": round(time.perf_counter() - began, 1), "val_auc": meta["val_metrics"]["val_auc"]}
        row["checkpoint"] = str(run / "model.pt")
        evaluate_both(model, meta, row, marked, flipped, args.size)
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
    if args.record:
        from record import write_record

        figures = {"settings": results["settings"], "models": results["models"]}
        print(f"record: {write_record(args.record, figures, note=f'marker: {args.marker}')}")


if __name__ == "__main__":
    main()
