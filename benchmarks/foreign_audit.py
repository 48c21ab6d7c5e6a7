"""What auditing a foreign model costs against auditing a pneumocam model of the same architecture and weights.

A pneumocam ResNet50 (random initialisation, its head fitted one epoch on phantoms) is audited twice with the same
settings: as its model.pt (`run --model RUN/model.pt`) and as a foreign model (`run --model torchvision:W.pt,
arch=resnet50`, the same weights as a plain torchvision state_dict). Runs are interleaved, `--repeats` of each;
medians are compared.
    python benchmarks/foreign_audit.py [--films 32] [--repeats 2] [--record foreign-audit]
Exits 1 when the foreign audit costs more than TARGET_RATIO x the pneumocam audit, or a run fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.core.messages import silent, use_channel  # noqa: E402
from pneumocam.data.phantoms import write_phantom_dataset  # noqa: E402
from pneumocam.model.network import load_checkpoint  # noqa: E402
from pneumocam.pipeline.config import ExperimentConfig  # noqa: E402
from pneumocam.pipeline.experiment import run_experiment  # noqa: E402
from pneumocam.train.config import TrainConfig  # noqa: E402
from pneumocam.train.fit import fit  # noqa: E402

TARGET_RATIO = 1.2
SIZE = 224


def audit(model: str, data: Path, lungs: Path, out: Path) -> float:
    train = TrainConfig(data=str(data), weights="none", image_size=SIZE, batch_size=16, use_cache=False, seed=0)
    config = ExperimentConfig(
        train=train, eval_split="test", checkpoint=model, masks={"lungs": str(lungs)}, trust_images=8,
        n_per_class=8, n_draws=100, bootstrap=100, synthetic=True,
    )  # fmt: skip
    began = time.perf_counter()
    run_experiment(config, runs_dir=out)
    return time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=32, help="Test films (half per class).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    args = parser.parse_args(argv)
    stamped = stamp()  # the tree and machine as measuring starts
    work = Path(tempfile.mkdtemp(prefix="foreign-audit-"))
    data = write_phantom_dataset(work / "phantoms", {"train": 16, "val": 8, "test": args.films // 2}, SIZE, seed=3)
    with use_channel(silent, silent):
        trained = fit(
            TrainConfig(data=str(data.images), mode="frozen", weights="none", image_size=SIZE, epochs=1,
                        batch_size=16, val_source="dataset", seed=1, use_cache=False),
            runs_dir=work / "train",
        )  # fmt: skip
    checkpoint = Path(trained) / "model.pt"
    model, _ = load_checkpoint(checkpoint, "cpu")
    torch.save(model.state_dict(), work / "resnet50.pt")
    foreign = f"torchvision:{work}/resnet50.pt,arch=resnet50"
    models = {"pneumocam model.pt": str(checkpoint), "foreign (torchvision spec)": foreign}
    seconds = {name: [] for name in models}
    with use_channel(silent, silent):
        for repeat in range(args.repeats):
            for name, spec in models.items():
                seconds[name].append(audit(spec, data.images, data.lung_masks, work / f"runs-{repeat}"))
    medians = {name: statistics.median(found) for name, found in seconds.items()}
    ratio = medians["foreign (torchvision spec)"] / medians["pneumocam model.pt"]
    figures = {
        "films": args.films,
        "image_size": SIZE,
        "repeats": args.repeats,
        "seconds": seconds,
        "median_s": medians,
        "ratio_foreign_to_pneumocam": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO,
    }
    for name in models:
        print(f"{name:<28} median {medians[name]:.1f} s  ({', '.join(f'{s:.1f}' for s in seconds[name])})")
    print(f"foreign / pneumocam: {ratio:.2f}x (target <= {TARGET_RATIO}x)")
    if args.record:
        note = "run_experiment on phantoms' test split, same settings and weights; interleaved; medians"
        write_record(args.record, figures, note=note, stamped=stamped)
    return 0 if figures["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
