"""The `pneumocam` command line: thin wiring over the library modules."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import CLASS_NAMES
from .errors import PneumocamError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Explainable pneumonia detection on chest X-rays: train, evaluate, explain, test, report.")
console = Console(highlight=False, soft_wrap=True)


def clean_errors(command):
    """Bad input ends in one clear message and exit status 2, never in a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PneumocamError as exc:
            Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@clean_errors
def data(
    root: Path = typer.Argument(..., help="Dataset folder ({train,val,test}/{NORMAL,PNEUMONIA}/) or a CSV manifest."),
    image_size: int = typer.Option(224, help="Side of the square model input, in pixels."),
    val_source: str = typer.Option("auto", help="auto | carved | dataset: where validation images come from."),
    val_fraction: float = typer.Option(0.2, help="Share of train's patients carved out for validation."),
    seed: int = typer.Option(0, help="Seed of the validation split."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode every image again instead of using the cache."),
    skipped_csv: Optional[Path] = typer.Option(None, help="Also write the skipped files (path, reason) here."),
):
    """Check a dataset before a long run: counts, unreadable files, the validation split."""
    from .data import choose_validation, discover, load_images
    from .outputs import write_skipped

    index = discover(root)
    table = Table(title=f"{escape(str(index.root))} ({index.source})")
    for column in ("split", *CLASS_NAMES, "total", "readable", "skipped"):
        table.add_column(column, justify="left" if column == "split" else "right")
    skipped = []
    for split in index.splits:
        samples = index.split(split)
        loaded = load_images(samples, image_size, use_cache=not no_cache, description=f"Reading {split}")
        skipped.extend(loaded.skipped)
        counts = index.counts()[split]
        table.add_row(split, *(str(counts[c]) for c in CLASS_NAMES), str(len(samples)), str(len(loaded.samples)),
                      str(len(loaded.skipped)))
    console.print(table)
    console.print(f"ignored: {index.ignored_hidden} hidden files, {index.ignored_non_image} non-image files")
    for folder in index.unknown_folders:
        console.print(f"[yellow]ignored unknown folder:[/] {escape(folder)}")
    for item in skipped:
        console.print(f"[yellow]skipped[/] {escape(item.path)}: {escape(item.reason)}")
    if skipped_csv:
        write_skipped(skipped_csv, skipped)
    if "train" in index.splits:
        _, _, plan = choose_validation(index, source=val_source, fraction=val_fraction, seed=seed)
        console.print(
            f"validation: {plan.source} ({plan.reason}); grouped by {plan.grouping}; "
            f"train {plan.n_train} images / {plan.patients_train} patients, "
            f"val {plan.n_val} images / {plan.patients_val} patients, shared patients: {plan.shared_patients}"
        )


@app.command()
@clean_errors
def phantoms(
    out: Path = typer.Argument(..., help="Folder to create; images go to OUT/images, masks beside them."),
    train: int = typer.Option(200, help="Phantoms per class in train."),
    val: int = typer.Option(0, help="Phantoms per class in val."),
    test: int = typer.Option(50, help="Phantoms per class in test."),
    image_size: int = typer.Option(224, help="Side of the square images."),
    seed: int = typer.Option(0),
    shortcut: float = typer.Option(0.0, help="0: none; p in (0.5, 1]: corner marker on PNEUMONIA with prob. p, on NORMAL with 1-p."),
):
    """Write synthetic chest X-ray phantoms with lung and lesion masks (Kermany layout)."""
    from .data.phantoms import write_phantom_dataset

    if out.exists() and any(out.iterdir()):
        raise PneumocamError(f"{out} exists and is not empty: choose a new folder (nothing is overwritten)")
    counts = {k: v for k, v in (("train", train), ("val", val), ("test", test)) if v > 0}
    written = write_phantom_dataset(out, counts, size=image_size, seed=seed, shortcut=shortcut)
    console.print(f"phantoms written to {escape(str(written.images))}; masks in {escape(str(written.lung_masks.parent))}")


def _interruptible(started: list[Path], action, command: str = "train"):
    """Ctrl-C or SIGTERM: the run folder stays marked incomplete and the last epoch's state is resumable."""
    import signal

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return action()
    except KeyboardInterrupt:
        if started:
            Console(stderr=True).print(
                f"[bold yellow]interrupted:[/] {escape(str(started[-1]))} is marked incomplete; continue it with "
                f"pneumocam {command} --resume {escape(str(started[-1]))}"
            )
        else:
            Console(stderr=True).print("[bold yellow]interrupted[/] before the run folder was created; nothing was written")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _given_on_command_line(ctx: typer.Context, values: dict) -> dict:
    """The options the user typed (not defaults), as TrainConfig fields: what --resume must check."""
    # Compared by name: typer vendors click, and its ParameterSource enum is not public API.
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()
            if getattr(ctx.get_parameter_source(k), "name", None) in ("COMMANDLINE", "ENVIRONMENT")}


@app.command()
@clean_errors
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, help="Dataset folder or CSV manifest."),
    out: Path = typer.Option(Path("runs"), help="Parent folder: each run goes into a fresh timestamped folder."),
    mode: str = typer.Option("frozen", help="frozen (the original: head only) | partial (layer4 + head) | full."),
    weights: str = typer.Option("imagenet", help="imagenet | imagenet-v1 | none | PATH to a local state_dict."),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(32),
    image_size: int = typer.Option(224),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate (default: 1e-3 frozen, 3e-4 partial, 1e-4 full)."),
    weight_decay: float = typer.Option(1e-4),
    schedule: str = typer.Option("cosine", help="cosine | constant."),
    class_weights: str = typer.Option("auto", help="auto | balanced | none: loss weights against class imbalance "
                                      "(auto: balanced, or none with --weighted-sampler, which balances already)."),
    weighted_sampler: bool = typer.Option(False, help="Draw batches class-balanced instead of weighting the loss."),
    augment: bool = typer.Option(False, help="Small rotation, shift, scale, contrast (off in the faithful recipe)."),
    val_source: str = typer.Option("auto", help="auto | carved | dataset."),
    val_fraction: float = typer.Option(0.2),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    select_by: str = typer.Option("auc", help="auc | loss: how the best epoch is chosen on validation."),
    max_per_class: Optional[int] = typer.Option(None, help="Use at most this many images per class (quick runs)."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run folder."),
):
    """Train the classifier; the best epoch on validation becomes RUN/model.pt."""
    from .train import TrainConfig, fit

    started: list[Path] = []

    def announce(folder: Path) -> None:
        started.append(folder)
        console.print(f"run folder: {escape(str(folder))}")

    if resume is not None:
        settings = dict(data=data, mode=mode, weights=weights, epochs=epochs, batch_size=batch_size, image_size=image_size, lr=lr,
                        weight_decay=weight_decay, schedule=schedule, class_weights=class_weights, weighted_sampler=weighted_sampler,
                        augment=augment, val_source=val_source, val_fraction=val_fraction, seed=seed, device=device,
                        select_by=select_by, max_per_class=max_per_class)
        overrides = _given_on_command_line(ctx, settings)
        run_dir = _interruptible(started, lambda: fit(None, run_dir=resume, resume=True, on_start=announce, overrides=overrides))
    else:
        if data is None:
            raise PneumocamError("--data is required (a dataset folder or CSV manifest), unless --resume is given")
        config = TrainConfig(data=str(data), mode=mode, weights=weights, epochs=epochs, batch_size=batch_size,
                             image_size=image_size, lr=lr, weight_decay=weight_decay, schedule=schedule,
                             class_weights=class_weights, weighted_sampler=weighted_sampler, augment=augment,
                             val_source=val_source, val_fraction=val_fraction, seed=seed, device=device,
                             select_by=select_by, max_per_class=max_per_class)
        run_dir = _interruptible(started, lambda: fit(config, runs_dir=out, on_start=announce))
    console.print(f"[green]done:[/] {escape(str(run_dir / 'model.pt'))}")


@app.command()
@clean_errors
def evaluate(
    checkpoint: Path = typer.Option(..., help="A pneumocam model.pt."),
    data: Path = typer.Option(..., help="Dataset folder or CSV manifest; only the evaluated split is needed."),
    split: str = typer.Option("test", help="test | val | train."),
    out: Path = typer.Option(Path("runs"), help="Parent folder for a fresh evaluation folder."),
    batch_size: int = typer.Option(32),
    device: str = typer.Option("auto"),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the AUC confidence interval (patients resampled when known)."),
    seed: int = typer.Option(0),
    strict: bool = typer.Option(False, help="Stop (exit 2) if any evaluated image or patient was used to train or select the model."),
):
    """Metrics at threshold 0.5 and at the validation-chosen threshold; predictions.csv joined by file."""
    from .evaluate import evaluate_split
    from .model import load_checkpoint, resolve_device
    from .outputs import mark_complete, new_run_folder

    target = resolve_device(device)
    model, metadata = load_checkpoint(checkpoint, target)
    pending: list[str] = []
    if strict:  # fail before a folder is made
        from .data import discover
        from .leakage import check_leakage, enforce

        enforce(check_leakage(metadata, discover(data).split(split)), True, pending.append)
    folder = new_run_folder(out, prefix=f"evaluate-{split}")
    result = evaluate_split(model, metadata, str(data), split, folder, batch_size, target, bootstrap, seed, str(checkpoint),
                            strict=strict, warn=_warn)
    mark_complete(folder)
    _print_metrics(result)
    console.print(f"[green]written:[/] {escape(str(folder))}")


def _warn(text: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]warning:[/] {escape(text)}")


def _print_metrics(result: dict) -> None:
    weights = result.get("weights") or {}
    if weights.get("source") == "none":
        console.print(f"[bold red]{escape(weights.get('description', 'random initialisation'))}[/]")
    for name, m in result["metrics"].items():
        table = Table(title=f"{result['split']} split, {name} = {m['threshold']:.3f} (n = {m['n']})")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for cls, row in (*m["per_class"].items(), ("macro avg", m["macro_avg"]), ("weighted avg", m["weighted_avg"])):
            table.add_row(cls, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
        console.print(table)
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        ci = "" if not m["roc_auc_ci95"] else f" (95% CI {m['roc_auc_ci95'][0]:.3f}-{m['roc_auc_ci95'][1]:.3f})"
        unit = f", resampling by {m.get('roc_auc_ci_unit')}" if m["roc_auc_ci95"] else ""
        console.print(f"accuracy {m['accuracy']:.3f}, ROC-AUC {auc}{ci}{unit}, sensitivity {m['sensitivity']}, specificity {m['specificity']}")
    leakage = result.get("leakage") or {}
    seen = [leakage.get(k) for k in ("n_images_seen_in_training", "n_images_seen_in_selection", "n_patients_shared_with_training",
                                     "n_patients_shared_with_selection")]
    if not leakage.get("recorded", True):
        console.print("[yellow]leakage not checked: the checkpoint does not record what it was trained on[/]")
    elif any(seen):
        console.print(f"[bold red]LEAKAGE:[/] images seen in training {seen[0]}, in selection {seen[1]}; patients shared with "
                      f"training {seen[2]}, with selection {seen[3]} (list in leakage.csv)")
    else:
        console.print(f"leakage check: no evaluated image or patient was used in training or selection ({leakage.get('n_images_evaluated')} images)")


def _n_per_class(value: str) -> int | None:
    if value.lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise PneumocamError(f"--n-per-class must be a whole number or 'all', got '{value}'") from None


@app.command()
@clean_errors
def run(
    data: Optional[Path] = typer.Option(None, help="Dataset folder or CSV manifest (not needed with --resume)."),
    resume: Optional[Path] = typer.Option(None, help="Finish an interrupted run folder: training resumes, then the rest."),
    strict: bool = typer.Option(False, help="Stop (exit 2) if any evaluated image or patient was used to train or select the model."),
    out: Path = typer.Option(Path("runs"), help="Parent folder: the run goes into a fresh timestamped folder."),
    checkpoint: Optional[Path] = typer.Option(None, help="Skip training and explain this model.pt."),
    eval_split: str = typer.Option("test", help="test | val | heldout (patients of train set aside before training, for data without a test split)."),
    holdout_fraction: float = typer.Option(0.15, help="With --eval-split heldout: share of train's patients set aside."),
    method: str = typer.Option("gradcam", help="gradcam | hirescam | gradcam++ | layercam | eigencam | scorecam."),
    target: str = typer.Option("pred", help="pred | true | PNEUMONIA | NORMAL: the class each map explains."),
    n_per_class: str = typer.Option("30", help="Images per class in the original random sample, or 'all'."),
    n_draws: int = typer.Option(1000, help="Resampled draws for the distribution of p and d."),
    alpha: float = typer.Option(0.05),
    lung_masks: Optional[Path] = typer.Option(None, help="Lung masks laid out MASKS/{split}/{CLASS}/<stem>.png."),
    lung_model: Optional[Path] = typer.Option(None, help="A lung model from `pneumocam lungs fit`, for images without a mask."),
    trust_images: int = typer.Option(16, help="Images for the randomisation and deletion / insertion checks (0: skip)."),
    mode: str = typer.Option("frozen"), weights: str = typer.Option("imagenet"), epochs: int = typer.Option(10),
    batch_size: int = typer.Option(32), image_size: int = typer.Option(224), lr: Optional[float] = typer.Option(None),
    class_weights: str = typer.Option("balanced"), augment: bool = typer.Option(False), val_source: str = typer.Option("auto"),
    seed: int = typer.Option(0), device: str = typer.Option("auto"), max_per_class: Optional[int] = typer.Option(None),
):
    """Train, evaluate, Grad-CAM, importance scores, statistics and report, in one fresh run folder."""
    from .experiment import ExperimentConfig, resume_experiment, run_experiment
    from .train import TrainConfig

    started: list[Path] = []
    if resume is not None:
        folder = _interruptible(started, lambda: resume_experiment(resume, on_start=started.append), command="run")
        console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")
        return
    if data is None:
        raise PneumocamError("--data is required (a dataset folder or CSV manifest), unless --resume is given")
    config = ExperimentConfig(
        train=TrainConfig(data=str(data), mode=mode, weights=weights, epochs=epochs, batch_size=batch_size, image_size=image_size,
                          lr=lr, class_weights=class_weights, augment=augment, val_source=val_source, seed=seed, device=device,
                          max_per_class=max_per_class, holdout_fraction=holdout_fraction if eval_split == "heldout" else 0.0),
        eval_split=eval_split, checkpoint=str(checkpoint) if checkpoint else None, method=method, target=target,
        n_per_class=_n_per_class(n_per_class), n_draws=n_draws, alpha=alpha, masks={"lungs": str(lung_masks)} if lung_masks else {},
        lung_model=str(lung_model) if lung_model else None, trust_images=trust_images, strict=strict)

    def announce(folder: Path) -> None:
        started.append(folder)
        console.print(f"run folder: {escape(str(folder))}")

    folder = _interruptible(started, lambda: run_experiment(config, runs_dir=out, on_start=announce), command="run")
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")


@app.command()
@clean_errors
def demo(
    out: Path = typer.Option(Path("demo-runs"), help="Parent folder for the demo's run folder."),
    seed: int = typer.Option(0),
    shortcut: float = typer.Option(0.0, help="Add the label-correlated corner marker (e.g. 0.9) to watch a model cheat."),
):
    """The whole experiment on synthetic phantoms generated on the fly (no data, no downloads, a few minutes)."""
    from .experiment import run_demo

    folder = run_demo(out, seed=seed, shortcut=shortcut)
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")


@app.command()
@clean_errors
def stats(
    scores: Path = typer.Argument(..., help="CSV with a label column (NORMAL / PNEUMONIA) and score columns."),
    score: list[str] = typer.Option(..., "--score", help="Score column(s) to test (repeatable)."),
    n_per_class: str = typer.Option("30", help="Random images per class, as in the original protocol, or 'all'."),
    seed: int = typer.Option(0),
    alpha: float = typer.Option(0.05),
    n_draws: int = typer.Option(1000, help="Resampled draws for the distribution of p and d (0: none)."),
    out: Optional[Path] = typer.Option(None, help="Folder for stats.json (a fresh folder inside it)."),
):
    """Compare a score between NORMAL and PNEUMONIA: Student, Welch, Mann-Whitney, permutation, effect sizes."""
    from .outputs import mark_complete, new_run_folder, write_json
    from .stats import read_scores, score_report, summary_text

    n = _n_per_class(n_per_class)
    results = {}
    for column, (normal, pneumonia, dropped) in read_scores(scores, score).items():
        if any(dropped.values()):
            console.print(f"[yellow]{column}: left out {dropped['NORMAL']} NORMAL and {dropped['PNEUMONIA']} PNEUMONIA rows "
                          "whose score is NaN or empty[/]")
        result = score_report(normal, pneumonia, n, n_draws, alpha, seed)
        result["source"] = {"file": str(scores), "column": column, "n_per_class": n, "seed": seed, "dropped_nan_rows": dropped}
        results[column] = result
        console.print(escape(summary_text(result, column)) + "\n")
    if out is not None:
        folder = new_run_folder(out, prefix="stats")
        write_json(folder / "stats.json", results[score[0]] if len(score) == 1 else results)
        mark_complete(folder)
        console.print(f"[green]written:[/] {escape(str(folder / 'stats.json'))}")


@app.command()
@clean_errors
def predict(
    checkpoint: Path = typer.Option(..., help="A pneumocam model.pt."),
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, TIFF, BMP or DICOM)."),
    out: Path = typer.Option(Path("predictions"), help="Parent folder for a fresh folder of overlays and predictions.csv."),
    method: str = typer.Option("gradcam"),
    device: str = typer.Option("auto"),
    strict: bool = typer.Option(False, help="Stop (exit 2) if a file (by content) or its patient was used to train or select the model."),
):
    """Probability, prediction at the model's validation-chosen threshold (and at 0.5), and a Grad-CAM overlay PNG per image."""
    from .predict import predict_files

    outcome = predict_files(checkpoint, images, out, method, device, strict=strict, warn=_warn)
    table = Table(title=f"predictions at threshold {outcome.threshold:.3f} ({outcome.threshold_source}); 0.5 shown beside it")
    for column in outcome.header:
        table.add_column(column)
    for row in outcome.rows:
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)
    folder = outcome.folder
    console.print(f"[green]written:[/] {escape(str(folder))}")


@app.command()
@clean_errors
def explain(
    run_dir: Optional[Path] = typer.Option(None, "--run", help="A finished `pneumocam run` folder: its model, data and split."),
    checkpoint: Optional[Path] = typer.Option(None, help="Or a model.pt ..."),
    data: Optional[Path] = typer.Option(None, help="... with its dataset folder or manifest."),
    split: Optional[str] = typer.Option(None, help="Split to explain (default: the run's, else test)."),
    lung_masks: Optional[Path] = typer.Option(None, help="Lung masks laid out MASKS/{split}/{CLASS}/<stem>.png."),
    lung_model: Optional[Path] = typer.Option(None, help="A lung model from `pneumocam lungs fit`."),
    method: str = typer.Option("gradcam"),
    target: str = typer.Option("pred"),
    trust_images: int = typer.Option(32, help="Images for the randomisation and deletion / insertion checks."),
    out: Path = typer.Option(Path("runs"), help="Parent folder for a fresh explanation folder."),
    device: str = typer.Option("auto"),
    strict: bool = typer.Option(False, help="Stop (exit 2) if any evaluated image or patient was used to train or select the model."),
):
    """Where the model looks and whether its explanation can be trusted, on an existing model."""
    import json

    from .experiment import ExperimentConfig, run_experiment
    from .train import TrainConfig

    holdout, seed = 0.0, 0
    if run_dir is not None:
        saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else None
        if not saved or "experiment" not in saved:
            raise PneumocamError(f"{run_dir} is not a finished `pneumocam run` folder (no config.json with an experiment)")
        experiment = saved["experiment"]
        checkpoint = checkpoint or Path(experiment["checkpoint"] or run_dir / "train" / "model.pt")
        data = data or Path(experiment["train"]["data"])
        split = split or experiment["eval_split"]
        holdout, seed = experiment["train"].get("holdout_fraction", 0.0), experiment["train"]["seed"]
        lung_masks = lung_masks or (Path(experiment["masks"]["lungs"]) if experiment.get("masks", {}).get("lungs") else None)
    if checkpoint is None or data is None:
        raise PneumocamError("give --run RUN_DIR, or both --checkpoint and --data")
    config = ExperimentConfig(
        train=TrainConfig(data=str(data), weights="none", seed=seed, device=device, holdout_fraction=holdout),
        eval_split=split or "test", checkpoint=str(checkpoint), method=method, target=target,
        masks={"lungs": str(lung_masks)} if lung_masks else {}, lung_model=str(lung_model) if lung_model else None,
        trust_images=trust_images, strict=strict)
    folder = run_experiment(config, runs_dir=out)
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")


lungs_app = typer.Typer(help="Lung-field estimates for images without masks.", no_args_is_help=True)
app.add_typer(lungs_app, name="lungs")


def _masked_samples(data: Path, masks: Path, split: str, limit: Optional[int], seed: int):
    import numpy as np

    from .data import discover
    from .regions import mask_path

    samples = [s for s in discover(data).split(split) if mask_path(masks, s).is_file()]
    if not samples:
        raise PneumocamError(f"no image of the '{split}' split has a mask in {masks} (expected MASKS/{split}/CLASS/<stem>.png)")
    if limit and len(samples) > limit:
        samples = [samples[i] for i in sorted(np.random.default_rng(seed).choice(len(samples), limit, replace=False))]
    return samples


@lungs_app.command("fit")
@clean_errors
def lungs_fit(
    data: Path = typer.Option(..., help="Dataset folder."),
    masks: Path = typer.Option(..., help="Lung masks laid out MASKS/{split}/{CLASS}/<stem>.png (0, 255 lung, 127 ignore)."),
    out: Path = typer.Option(..., help="Where to write the lung model (an existing file is never overwritten)."),
    split: str = typer.Option("train"),
    max_images: Optional[int] = typer.Option(400, help="Train on at most this many masked images."),
    epochs: int = typer.Option(30),
    image_size: int = typer.Option(224),
    seed: int = typer.Option(0),
):
    """Train the small lung-field model on your own masks."""
    from .data.readers import read_grayscale, read_resized
    from .lungs import LungModel
    from .regions import mask_path

    if out.exists():
        raise PneumocamError(f"{out} exists: choose a new file name (nothing is overwritten)")
    samples = _masked_samples(data, masks, split, max_images, seed)
    from .data.readers import resize_square

    images = [read_resized(s.path, image_size) for s in samples]
    mask_images = [resize_square(read_grayscale(mask_path(masks, s)), image_size) for s in samples]
    model = LungModel.fit(images, mask_images, epochs=epochs, seed=seed, description=f"{data} / {masks}, split {split}")
    model.trained_on["patients"] = sorted({s.patient_id or s.path for s in samples})
    model.save(out)
    console.print(f"[green]lung model:[/] {escape(str(out))} (trained on {len(samples)} images)")


@lungs_app.command("dice")
@clean_errors
def lungs_dice(
    data: Path = typer.Option(..., help="Dataset folder."),
    masks: Path = typer.Option(..., help="Reference lung masks."),
    split: str = typer.Option("val"),
    model: Optional[Path] = typer.Option(None, help="A lung model; without it the classical estimate is scored."),
    max_images: Optional[int] = typer.Option(300),
    image_size: int = typer.Option(224),
    seed: int = typer.Option(1),
):
    """Score a lung estimate against reference masks (mean Dice; 127 'ignore' pixels excluded)."""
    import numpy as np

    from .data.readers import read_grayscale, read_resized, resize_square
    from .lungs import LungModel, classical_lungs, dice
    from .progress import track
    from .regions import mask_path

    estimator = LungModel.load(model) if model else None
    seen = set(estimator.trained_on.get("patients", [])) if estimator else set()
    samples = [s for s in _masked_samples(data, masks, split, None, seed) if (s.patient_id or s.path) not in seen]
    if max_images and len(samples) > max_images:
        samples = [samples[i] for i in sorted(np.random.default_rng(seed).choice(len(samples), max_images, replace=False))]
    if not samples:
        raise PneumocamError("every masked image belongs to a patient the lung model was trained on: score it on another split")
    scores = []
    for sample in track(samples, "Scoring lung estimate"):
        gray = read_resized(sample.path, image_size)
        reference = resize_square(read_grayscale(mask_path(masks, sample)), image_size)
        estimate = estimator.predict(gray) if estimator else classical_lungs(gray)
        scores.append(dice(estimate, reference == 255, reference == 127))
    scores = np.array(scores)
    console.print(f"{'learned model ' + str(model) if model else 'classical estimate'} on {len(scores)} '{split}' images"
                  f"{' of patients it was not trained on' if seen else ''}: "
                  f"mean Dice {scores.mean():.3f}, median {np.median(scores):.3f}, 10th percentile {np.percentile(scores, 10):.3f}")


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
