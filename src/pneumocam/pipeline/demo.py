"""The demo: the whole experiment on phantoms generated into the run folder, with ground-truth lesion and lung masks."""

from __future__ import annotations

from pathlib import Path

from pneumocam.core.defaults import SEED
from pneumocam.core.outputs import new_run_folder
from pneumocam.data.phantoms import write_phantom_dataset
from pneumocam.pipeline.config import ExperimentConfig
from pneumocam.pipeline.experiment import run_experiment
from pneumocam.train.config import TrainConfig

DEMO_IMAGE_SIZE = 96  # phantoms at 96 px: the demo's whole experiment in a few minutes on 2 cores


def run_demo(
    out: str | Path,
    seed: int = SEED,
    shortcut: float = 0.0,
    image_size: int = DEMO_IMAGE_SIZE,
    counts: dict[str, int] | None = None,
    epochs: int = 8,
    focus: str = "none",
    **experiment,
) -> Path:
    """Generate phantoms (with a label-correlated corner marker when shortcut > 0), then run every stage on them.
    experiment: ExperimentConfig settings other than the demo's own (e.g. fewer draws for a quick look)."""

    run_dir = new_run_folder(out, prefix="demo")
    # Sized to finish in a few minutes on 2 CPU cores: full fine-tuning from random weights at 96 px.
    counts = counts or {"train": 250, "val": 40, "test": 60}
    data = write_phantom_dataset(run_dir / "phantoms", counts, size=image_size, seed=seed, shortcut=shortcut)
    masks = {"lesion": str(data.lesion_masks), "lungs": str(data.lung_masks)}
    if data.marker_masks is not None:
        masks["marker"] = str(data.marker_masks)
    config = ExperimentConfig(
        train=TrainConfig(
            data=str(data.images),
            mode="full",
            weights="none",
            epochs=epochs,
            batch_size=32,
            image_size=image_size,
            lr=1e-3,
            val_source="dataset",
            seed=seed,
            use_cache=False,
            focus=focus,
            focus_masks=str(data.lung_masks),
        ),
        eval_split="test",
        synthetic=True,
        masks=masks,
        **({"n_draws": 1000} | experiment),
    )
    return run_experiment(config, run_dir=run_dir)
