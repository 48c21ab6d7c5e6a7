"""`pneumocam predict`, `explain` and `stats`: an existing model read on films, and a score compared between classes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from pneumocam.analysis.stats import read_scores, score_report, summary_text
from pneumocam.cli.errors import clean_errors, console
from pneumocam.cli.options import (
    EXPERIMENT_DEFAULTS,
    EXPLAINING,
    PRECISION,
    STATISTICS,
    STRICT,
    Device,
    model_option,
    options,
    plain,
)
from pneumocam.core.defaults import SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.outputs import mark_complete, new_run_folder, write_json
from pneumocam.core.schema import STATS
from pneumocam.pipeline.experiment import ExperimentConfig, run_experiment
from pneumocam.pipeline.predict import predict_files
from pneumocam.pipeline.runfolder import RunFolder
from pneumocam.train.config import TrainConfig


def n_per_class_value(value) -> int | None:
    if str(value).lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise PneumocamError(f"--n-per-class must be a whole number or 'all', got '{value}'") from None


def experiment_settings(values: dict) -> dict:
    """Options -> ExperimentConfig fields (everything but the training settings)."""
    return dict(
        method=values["method"],
        target=values["target"],
        n_per_class=n_per_class_value(values["n_per_class"])
        if "n_per_class" in values
        else EXPERIMENT_DEFAULTS["n_per_class"],
        n_draws=values.get("n_draws", EXPERIMENT_DEFAULTS["n_draws"]),
        alpha=values.get("alpha", EXPERIMENT_DEFAULTS["alpha"]),
        trust_images=values["trust_images"],
        strict=values["strict"],
        include_ood=values.get("include_ood", EXPERIMENT_DEFAULTS["include_ood"]),
        masks={"lungs": str(values["lung_masks"])} if values["lung_masks"] else {},
        lung_model=str(values["lung_model"]) if values["lung_model"] else None,
        bootstrap=values.get("bootstrap", EXPERIMENT_DEFAULTS["bootstrap"]),
    )


@clean_errors
@options(STATISTICS)
def stats(
    scores: Path = typer.Argument(
        ..., help="CSV with a label column (NORMAL / PNEUMONIA) and score columns (e.g. a run's importance.csv)."
    ),
    score: list[str] = typer.Option(..., "--score", help="Score column(s) to test (repeatable)."),
    seed: int = typer.Option(SEED, help="Seed of the sample, the resampled draws, the permutations and the bootstrap."),
    out: Optional[Path] = typer.Option(None, help="Folder for stats.json (a fresh folder inside it)."),
    **settings,
):
    """Compare a score between NORMAL and PNEUMONIA: Student, Welch, Mann-Whitney, permutation, effect sizes."""

    n = n_per_class_value(settings["n_per_class"])
    results = {}
    for column, (normal, pneumonia, dropped) in read_scores(scores, score).items():
        if any(dropped.values()):
            console.print(
                f"[yellow]{column}: left out {dropped['NORMAL']} NORMAL and {dropped['PNEUMONIA']} PNEUMONIA rows "
                "whose score is NaN or empty[/]"
            )
        result = score_report(normal, pneumonia, n, settings["n_draws"], settings["alpha"], seed)
        result["dropped_nan_rows"] = dropped
        result["source"] = {"file": str(scores), "column": column, "n_per_class": n, "seed": seed}
        results[column] = result
        console.print(escape(summary_text(result, column)) + "\n")
    if out is not None:
        folder = new_run_folder(out, prefix="stats")
        write_json(folder / STATS, results)
        mark_complete(folder)
        console.print(f"[green]written:[/] {escape(str(folder / 'stats.json'))}")


@clean_errors
@options({"method": EXPLAINING["method"]}, STRICT, PRECISION)
def predict(
    checkpoint: str = model_option(...),
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, TIFF, BMP or DICOM)."),
    out: Path = typer.Option(
        Path("predictions"), help="Parent folder for a fresh folder of overlays and predictions.csv."
    ),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
    **settings,
):
    """Probability, the decision at the model's validation-chosen threshold (and at 0.5), and an overlay per image."""

    outcome = predict_files(
        checkpoint,
        images,
        out,
        settings["method"].value,
        device.value,
        strict=settings["strict"],
        precision=settings["precision"].value,
    )
    table = Table(
        title=f"predictions at threshold {outcome.threshold:.3f} ({outcome.threshold_source}); 0.5 shown beside it"
    )
    for column in outcome.header:
        table.add_column(column)
    for row in outcome.rows:
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)
    console.print(f"[green]written:[/] {escape(str(outcome.folder))}")
    if outcome.n_read == 0:
        raise PneumocamError(f"none of the {len(images)} files could be read as a film (reasons in the table above)")


@clean_errors
@options(EXPLAINING, PRECISION, defaults={"trust_images": 32})
def explain(
    run_dir: Optional[Path] = typer.Option(
        None, "--run", help="A finished `pneumocam run` folder: its model, data and split."
    ),
    checkpoint: Optional[str] = model_option(None, " (or --run)"),
    data: Optional[Path] = typer.Option(None, help="... with its dataset folder or manifest."),
    split: Optional[str] = typer.Option(
        None, help="Split to explain: test | val | heldout (default: the run's, else test)."
    ),
    out: Path = typer.Option(Path("runs"), help="Parent folder for a fresh explanation folder."),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
    **settings,
):
    """Where the model looks and whether its explanation can be trusted, on an existing model."""

    seed = 0
    if run_dir is not None:
        folder = RunFolder(run_dir)
        checkpoint, data, split = checkpoint or folder.checkpoint, data or folder.data, split or folder.eval_split
        settings["lung_masks"] = settings["lung_masks"] or folder.lung_masks
        seed = folder.experiment["train"]["seed"]
    if checkpoint is None or data is None:
        raise PneumocamError("give --run RUN_DIR, or both --model and --data")
    values = plain(settings)  # the statistics keep ExperimentConfig's defaults
    precision = values.pop("precision")
    config = ExperimentConfig(
        train=TrainConfig(data=str(data), weights="none", seed=seed, device=device.value, precision=precision),
        eval_split=split or "test",
        checkpoint=str(checkpoint),
        **experiment_settings(values),
    )
    folder = run_experiment(config, runs_dir=out)
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")
