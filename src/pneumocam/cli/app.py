"""The `pneumocam` command line: thin wiring over the library modules.

Options are declared once in cli_options (fixed choices as Enums); bad input ends in one message and exit
status 2 (cli_errors); `pneumocam lungs ...` lives in cli_lungs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from pneumocam.anatomy.focus import LUNG_MODES
from pneumocam.cli.data import data, manifest, phantoms, print_metrics
from pneumocam.cli.entry import HELP, SUMMARIES, version_text
from pneumocam.cli.errors import clean_errors, console, errors
from pneumocam.cli.explain import experiment_settings, explain, predict, stats
from pneumocam.cli.guard import guard_app
from pneumocam.cli.lungs import lungs_app
from pneumocam.cli.options import (
    BOOTSTRAP,
    CONFIG,
    EXPERIMENT_DEFAULTS,
    EXPLAINING,
    PRECISION,
    STATISTICS,
    STRICT,
    TRAINING,
    Device,
    EvalSplit,
    Focus,
    Split,
    given_on_command_line,
    model_option,
    options,
    plain,
    with_config,
)
from pneumocam.cli.runs import compare, merge, report
from pneumocam.cli.serve import serve
from pneumocam.cli.webdataset import webdataset_app
from pneumocam.core.defaults import BATCH_SIZE, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.pipeline.config import DEFAULT_HOLDOUT_FRACTION
from pneumocam.pipeline.demo import run_demo
from pneumocam.pipeline.evaluation import evaluate_checkpoints
from pneumocam.pipeline.experiment import ExperimentConfig, resume_experiment, run_experiment
from pneumocam.train.config import TrainConfig
from pneumocam.train.fit import fit

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=HELP)


def _version(value: bool) -> None:
    if value:
        console.print(version_text())
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Explainable pneumonia detection on chest X-rays: train, evaluate, explain, test, report."""


for _name, _group in (("lungs", lungs_app), ("guard", guard_app), ("webdataset", webdataset_app)):
    app.add_typer(_group, name=_name, short_help=SUMMARIES[_name])
for _command in (serve, data, manifest, phantoms, report, compare, merge, stats, predict, explain):
    app.command(short_help=SUMMARIES[_command.__name__])(_command)


def _interruptible(started: list[Path], action, command: str):
    """Ctrl-C or SIGTERM: the run folder stays marked incomplete and the last epoch's state is resumable."""

    def terminate(signum, frame):
        raise KeyboardInterrupt

    # Both signals are handled here, explicitly: a process started in the background by a non-interactive shell
    # inherits SIGINT as ignored, and `kill -INT` would then be lost instead of stopping the run cleanly.
    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return action()
    except KeyboardInterrupt:
        if started:
            errors.print(
                f"[bold yellow]interrupted:[/] {escape(str(started[-1]))} is marked incomplete; continue it with "
                f"pneumocam {command} --resume {escape(str(started[-1]))}"
            )
        else:
            errors.print("[bold yellow]interrupted[/] before the run folder was created; nothing was written")
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _announcer(started: list[Path]):
    def announce(folder: Path) -> None:
        started.append(folder)
        console.print(f"run folder: {escape(str(folder))}")

    return announce


@app.command(short_help=SUMMARIES["train"])
@clean_errors
@options(TRAINING, CONFIG)
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(
        None, help="Dataset folder, CSV manifest or WebDataset shards (shards/cxr-{000000..000009}.tar)."
    ),
    out: Path = typer.Option(Path("runs"), help="Parent folder: each run goes into a fresh timestamped folder."),
    resume: Optional[Path] = typer.Option(
        None, help="Continue an interrupted run folder (settings given again must match it)."
    ),
    **settings,
):
    """Train the classifier; the best epoch on validation becomes RUN/model.pt."""

    started: list[Path] = []
    config_file = settings.pop("config")
    if resume is not None:
        overrides = plain(given_on_command_line(ctx, {"data": data, **settings}))
        run_dir = _interruptible(
            started,
            lambda: fit(None, run_dir=resume, resume=True, on_start=_announcer(started), overrides=overrides),
            "train",
        )
    else:
        values = with_config(ctx, {"data": data, **settings}, config_file)
        if values["data"] is None:
            raise PneumocamError("--data is required (a dataset folder or CSV manifest), unless --resume is given")
        config = TrainConfig(**plain(values))
        run_dir = _interruptible(started, lambda: fit(config, runs_dir=out, on_start=_announcer(started)), "train")
    console.print(f"[green]done:[/] {escape(str(run_dir / 'model.pt'))}")


@app.command(short_help=SUMMARIES["evaluate"])
@clean_errors
@options(BOOTSTRAP, STRICT, PRECISION)
def evaluate(
    checkpoint: list[str] = model_option(..., "; give several (--model A --model B) to evaluate their ensemble."),
    data: Path = typer.Option(
        ..., help="Dataset folder, CSV manifest or WebDataset shards; only the evaluated split is needed."
    ),
    split: Split = typer.Option(Split.test, help="The split to evaluate."),
    out: Path = typer.Option(Path("runs"), help="Parent folder for a fresh evaluation folder."),
    batch_size: int = typer.Option(BATCH_SIZE, help="Images per batch."),
    device: Device = typer.Option(Device.auto, help="Where to compute."),
    seed: int = typer.Option(SEED, help="Seed of the bootstrap."),
    tta: bool = typer.Option(
        False,
        "--tta",
        help="Test-time augmentation: each film also read rotated by -5 and +5 degrees and scaled by 0.95 and "
        "1.05, the probabilities averaged (five forward passes a film).",
    ),
    **settings,
):
    """Metrics at threshold 0.5 and at the validation-chosen threshold; predictions.csv joined by file. Several
    checkpoints: their ensemble (the mean of their calibrated probabilities, decided at 0.5), each member's AUC."""

    folder, result = evaluate_checkpoints(
        checkpoint, data, split.value, out, batch_size, device.value, seed, settings["bootstrap"], settings["strict"],
        settings["precision"].value, tta,
    )  # fmt: skip
    print_metrics(result)
    console.print(f"[green]written:[/] {escape(str(folder))}")


@app.command(short_help=SUMMARIES["run"])
@clean_errors
@options(TRAINING, EXPLAINING, STATISTICS, BOOTSTRAP, CONFIG)
def run(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(
        None, help="Dataset folder, CSV manifest or WebDataset shards (not needed with --resume)."
    ),
    out: Path = typer.Option(Path("runs"), help="Parent folder: the run goes into a fresh timestamped folder."),
    checkpoint: Optional[str] = model_option(None, ": skip training and explain this model."),
    eval_split: EvalSplit = typer.Option(
        EvalSplit(EXPERIMENT_DEFAULTS["eval_split"]),
        help="heldout: patients of train set aside before training, never trained "
        "or selected on (with --model: the part that model.pt recorded).",
    ),
    holdout_fraction: float = typer.Option(
        DEFAULT_HOLDOUT_FRACTION, help="With --eval-split heldout and training: share of train's patients set aside."
    ),
    resume: Optional[Path] = typer.Option(
        None, help="Finish an interrupted run folder: training resumes, then the rest."
    ),
    guard_films: Optional[Path] = typer.Option(
        None,
        help="With a foreign --model: films you name as in-distribution (a dataset or manifest); its guard "
        "is fitted on them. Without it a foreign model's guard is the input checks only.",
    ),
    shard: Optional[str] = typer.Option(
        None, help="i/N: with --model, explain only the i-th of N parts of the split (then `merge` the parts)."
    ),
    **settings,
):
    """Train, evaluate, Grad-CAM, importance scores, statistics and report, in one fresh run folder."""

    started: list[Path] = []
    if resume is not None:
        folder = _interruptible(started, lambda: resume_experiment(resume, on_start=started.append), "run")
        console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")
        return
    config_file = settings.pop("config")
    values = plain(
        with_config(
            ctx, {"data": data, "eval_split": eval_split, "holdout_fraction": holdout_fraction, **settings}, config_file
        )
    )
    if values["data"] is None:
        raise PneumocamError("--data is required (a dataset folder or CSV manifest), unless --resume is given")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PneumocamError(
            "`run` is one process: under torchrun, train with `torchrun ... -m pneumocam train`, then explain "
            "the model with `pneumocam run --checkpoint` (docs/scale.md)"
        )
    train_fields = {k: values[k] for k in ("data", *TRAINING)}
    if train_fields["focus"] in LUNG_MODES and not train_fields["focus_masks"]:
        train_fields["focus_masks"] = values["lung_masks"]
    if train_fields["attention_penalty"] and not train_fields["attention_masks"]:
        train_fields["attention_masks"] = values["lung_masks"]
    holdout = values["holdout_fraction"] if values["eval_split"] == "heldout" and checkpoint is None else 0.0
    config = ExperimentConfig(
        train=TrainConfig(**train_fields, holdout_fraction=holdout),
        eval_split=values["eval_split"],
        checkpoint=str(checkpoint) if checkpoint else None,
        shard=shard,
        guard_films=str(guard_films) if guard_films else None,
        **experiment_settings(values),
    )
    folder = _interruptible(started, lambda: run_experiment(config, runs_dir=out, on_start=_announcer(started)), "run")
    if shard:
        console.print(f"[green]part {escape(shard)} written:[/] {escape(str(folder))} (merge the parts with `merge`)")
        return
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")


@app.command(short_help=SUMMARIES["demo"])
@clean_errors
def demo(
    out: Path = typer.Option(Path("demo-runs"), help="Parent folder for the demo's run folder."),
    seed: int = typer.Option(SEED, help="Seed of the phantoms, the training and every draw."),
    shortcut: float = typer.Option(
        0.0, help="Add the label-correlated corner marker (e.g. 0.9) to watch a model cheat."
    ),
    focus: Focus = typer.Option(Focus.none, help="Train on focused films (body: the marker is hidden from the model)."),
):
    """The whole experiment on synthetic phantoms generated on the fly (no data, no downloads, a few minutes)."""

    folder = run_demo(out, seed=seed, shortcut=shortcut, focus=focus.value)
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")


def main() -> None:  # pragma: no cover - console-script entry
    app()
