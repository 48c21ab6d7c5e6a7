"""The domain-shift guard at several depths (a benchmark, not a test): Mahalanobis distance on pooled layer2, layer3
and layer4 features (Anthony & Kamnitsas 2023 score several depths) and a combination, against today's layer4-only
guard, on the shifts this machine can make.

Each score is fitted as the guard is (class means and a Ledoit-Wolf shared covariance on the training films'
features, model/guard.py via train/guard_fit.fit_guard) and its threshold passes 95% of the validation films; two
combinations standardise each depth's distance by its validation mean and spread and take the sum ("sum") or the
largest ("max") over the depths, each with its own threshold passing 95% of the validation films. Then each
score's flagged share on: the held-out films as they are (should stay near 5%), rotated 10 and 20 degrees, centre
crops (70% and 50% of the side), strong gamma (0.4 and 2.5), inverted films, phantoms, noise images, and the
full-resolution originals read with nearest-neighbour decimation instead of the antialiased resize.

    python benchmarks/guard_depths.py --checkpoint RUN/train/model.pt --data ../shared/data/kermany224 \
        [--train-films 1500] [--record guard-depths]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_record  # noqa: E402

DEPTHS = ("layer2", "layer3", "layer4")


def pooled_features(model, images: np.ndarray, precision, device="cpu", batch_size: int = 32) -> dict[str, np.ndarray]:
    """Global-average-pooled outputs of each depth for uint8 (N, S, S) films, as the model reads them."""
    import torch

    from pneumocam.core.precision import autocast
    from pneumocam.data import to_model_input

    found = {d: [] for d in DEPTHS}
    hooks = [
        getattr(model, depth).register_forward_hook(
            lambda _m, _i, out, depth=depth: found[depth].append(out.float().mean(dim=(2, 3)).cpu().numpy())
        )
        for depth in DEPTHS
    ]
    try:
        with torch.no_grad(), autocast(precision, device):
            for start in range(0, len(images), batch_size):
                model(to_model_input(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))))
    finally:
        for hook in hooks:
            hook.remove()
    return {d: np.concatenate(v) for d, v in found.items()}


def shifted_sets(held: np.ndarray, size: int, data: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """uint8 (N, size, size) films for each shift."""
    import torch
    import torchvision.transforms.v2.functional as F
    from PIL import Image

    from pneumocam.data.phantoms import make_phantom
    from pneumocam.data.readers import read_grayscale

    tensor = torch.from_numpy(held).unsqueeze(1)

    def crop(share: float) -> np.ndarray:
        side = int(round(size * share))
        cropped = F.center_crop(tensor, [side, side])
        return F.resize(cropped, [size, size], antialias=True)[:, 0].numpy()

    def gamma(g: float) -> np.ndarray:
        return np.clip(255.0 * (held / 255.0) ** g, 0, 255).round().astype(np.uint8)

    originals = sorted(Path(data).parent.glob("kermany-fullres-sample/train/*/*.jpeg"))
    decimated = []
    for path in originals:
        gray = read_grayscale(path)
        decimated.append(np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.NEAREST)))
    n = len(held)
    return {
        "held-out films as they are": held,
        "rotated 10 degrees": F.rotate(tensor, 10.0)[:, 0].numpy(),
        "rotated 20 degrees": F.rotate(tensor, 20.0)[:, 0].numpy(),
        "centre crop 70%": crop(0.7),
        "centre crop 50%": crop(0.5),
        "gamma 0.4": gamma(0.4),
        "gamma 2.5": gamma(2.5),
        "inverted": 255 - held,
        "phantoms": np.stack([make_phantom(rng, int(i % 2), size).image for i in range(min(n, 200))]),
        "uniform noise": rng.integers(0, 256, size=(min(n, 200), size, size), dtype=np.uint8),
        "originals, nearest-neighbour decimation": np.stack(decimated) if decimated else np.empty((0, size, size)),
    }


def main() -> None:
    from pneumocam.core.precision import resolve_precision
    from pneumocam.data import discover, load_images
    from pneumocam.data.prepare import prepare_data
    from pneumocam.model.network import load_checkpoint
    from pneumocam.pipeline.config import evaluated_samples
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.guard_fit import fit_guard

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--train-films", type=int, default=1500, help="Training films the scores are fitted on.")
    parser.add_argument("--record", default=None)
    args = parser.parse_args()

    began = time.perf_counter()
    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    if meta.get("focus", "none") != "none":
        raise SystemExit("a model with --focus reads cropped films; this benchmark shifts whole films (focus none)")
    size = int(meta["image_size"])
    precision = resolve_precision("auto", "cpu")
    config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in TrainConfig.__dataclass_fields__})
    prepared = prepare_data(config)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(prepared.train.images), min(args.train_films, len(prepared.train.images)), False))
    train = pooled_features(model, prepared.train.images[pick], precision)
    val = pooled_features(model, prepared.val.images, precision)
    labels = prepared.train.labels[pick]
    guards = {d: fit_guard(train[d], labels, val[d]) for d in DEPTHS}
    val_d = {d: guards[d].distances(val[d]) for d in DEPTHS}
    centre = {d: float(val_d[d].mean()) for d in DEPTHS}
    spread = {d: float(val_d[d].std()) for d in DEPTHS}

    def standardised(distances: dict[str, np.ndarray]) -> np.ndarray:  # (depths, films)
        return np.stack([(distances[d] - centre[d]) / spread[d] for d in DEPTHS])

    combinations = {"sum": lambda z: z.sum(axis=0), "max": lambda z: z.max(axis=0)}
    val_z = standardised(val_d)
    combined_thresholds = {name: float(np.quantile(rule(val_z), 0.95)) for name, rule in combinations.items()}
    held_samples = evaluated_samples(discover(args.data), "heldout", meta, args.checkpoint)
    held = load_images(held_samples, size).images
    table = {}
    for shift, images in shifted_sets(held, size, args.data, rng).items():
        if not len(images):
            continue
        found = pooled_features(model, images, precision)
        distances = {d: guards[d].distances(found[d]) for d in DEPTHS}
        row = {d: float(np.mean(distances[d] > guards[d].threshold)) for d in DEPTHS}
        z = standardised(distances)
        for rule_name, rule in combinations.items():
            row[rule_name] = float(np.mean(rule(z) > combined_thresholds[rule_name]))
        row["n"] = len(images)
        table[shift] = row
        print(f"{shift:<42} " + "  ".join(f"{k} {v:.1%}" for k, v in row.items() if k != "n") + f"  (n={len(images)})")
    shifts = [k for k in table if k != "held-out films as they are"]
    mean_flagged = {s: float(np.mean([table[k][s] for k in shifts])) for s in (*DEPTHS, *combinations)}
    figures = {
        "checkpoint": str(args.checkpoint),
        "train_films": int(len(pick)),
        "val_films": int(len(prepared.val.images)),
        "val_pass_rate": {d: guards[d].fitted_on["val_pass_rate"] for d in DEPTHS}
        | {name: float(np.mean(rule(val_z) <= combined_thresholds[name])) for name, rule in combinations.items()},
        "flagged_share": table,
        "mean_flagged_over_shifts": mean_flagged,
        "combinations": "sum and max over layer2-4 of (distance - validation mean) / validation SD; each with its "
        "own threshold passing 95% of the validation films",
        "precision": precision.to_dict(),
        "seconds": time.perf_counter() - began,
    }
    print("mean flagged over the shifts: " + "  ".join(f"{k} {v:.1%}" for k, v in mean_flagged.items()))
    if args.record:
        note = "Flagged share of each set at each score's 95% validation pass rate; bf16 features where auto picks it."
        print(f"record: {write_record(args.record, figures, note=note)}")


if __name__ == "__main__":
    main()
