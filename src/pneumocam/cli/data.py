"""`pneumocam data` and `pneumocam phantoms` (what a dataset holds; synthetic data to try things on), and the
metrics table every evaluating command prints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from pneumocam import CLASS_NAMES, started_random
from pneumocam.analysis.shortcut import describe, film_groups, shortcut_baseline, shortcut_features
from pneumocam.cli.errors import clean_errors, console
from pneumocam.cli.options import Marker, ValSource
from pneumocam.core.defaults import IMAGE_SIZE, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.outputs import write_csv, write_skipped
from pneumocam.core.schema import decision_key
from pneumocam.data import choose_validation, discover, load_images
from pneumocam.data.phantoms import write_phantom_dataset
from pneumocam.data.public import public_manifest


@clean_errors
def data(
    root: Path = typer.Argument(..., help="Dataset folder ({train,val,test}/{NORMAL,PNEUMONIA}/) or a CSV manifest."),
    image_size: int = typer.Option(IMAGE_SIZE, help="Side of the square model input, in pixels."),
    val_source: ValSource = typer.Option(ValSource.auto, help="Where validation images come from."),
    val_fraction: float = typer.Option(0.2, help="Share of train's images carved for validation, by whole patients."),
    seed: int = typer.Option(SEED, help="Seed of the validation split."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode every image again instead of using the cache."),
    skipped_csv: Optional[Path] = typer.Option(None, help="Also write the skipped files (path, reason) here."),
):
    """Check a dataset before a long run: counts, unreadable files, the validation split."""

    index = discover(root)
    table = Table(title=f"{escape(str(index.root))} ({index.source})")
    for column in ("split", *CLASS_NAMES, "total", "readable", "skipped"):
        table.add_column(column, justify="left" if column == "split" else "right")
    skipped, shortcuts = [], {}
    for split in index.splits:
        samples = index.split(split)
        loaded = load_images(samples, image_size, use_cache=not no_cache, description=f"Reading {split}")
        skipped.extend(loaded.skipped)
        if len(set(loaded.labels.tolist())) == 2 and len(loaded.samples) >= 20:
            features, names = shortcut_features(loaded)
            record = shortcut_baseline(features, loaded.labels, film_groups(loaded.samples))
            shortcuts[split] = describe(record, names)
        counts = index.counts()[split]
        table.add_row(
            split,
            *(str(counts[c]) for c in CLASS_NAMES),
            str(len(samples)),
            str(len(loaded.samples)),
            str(len(loaded.skipped)),
        )
    console.print(table)
    for split, record in shortcuts.items():
        carried = ", ".join(c["feature"] for c in record["carried_by"][:3])
        colour = "red" if record["warning"] else "green"
        console.print(
            f"[{colour}]shortcut baseline (no model) on {split}: ROC-AUC {record['roc_auc']:.3f}[/] from file size, "
            f"format, intensity and border alone ({record['folds']}-fold, grouped by patient; carried by {carried})"
            + (": the label is written in the acquisition; a model can score this without lungs" * record["warning"])
        )
    console.print(f"ignored: {index.ignored_hidden} hidden files, {index.ignored_non_image} non-image files")
    for folder in index.unknown_folders:
        console.print(f"[yellow]ignored unknown folder:[/] {escape(folder)}")
    for item in skipped:
        console.print(f"[yellow]skipped[/] {escape(item.path)}: {escape(item.reason)}")
    if skipped_csv:
        write_skipped(skipped_csv, skipped)
    if "train" in index.splits:
        _, _, plan = choose_validation(index, source=val_source.value, fraction=val_fraction, seed=seed)
        console.print(
            f"validation: {plan.source} ({plan.reason}); grouped by {plan.grouping}; "
            f"train {plan.n_train} images / {plan.patients_train} patients, val {plan.n_val} images / "
            f"{plan.patients_val} patients ({plan.actual_fraction:.1%}), shared patients: {plan.shared_patients}"
        )


@clean_errors
def phantoms(
    out: Path = typer.Argument(..., help="Folder to create; images go to OUT/images, masks beside them."),
    train: int = typer.Option(200, help="Phantoms per class in train."),
    val: int = typer.Option(0, help="Phantoms per class in val."),
    test: int = typer.Option(50, help="Phantoms per class in test."),
    image_size: int = typer.Option(IMAGE_SIZE, help="Side of the square images."),
    seed: int = typer.Option(SEED, help="Seed of the phantoms."),
    shortcut: float = typer.Option(
        0.0, help="0: none; p in (0.5, 1]: a marker on PNEUMONIA with prob. p, on NORMAL with 1-p."
    ),
    marker: Marker = typer.Option(
        "corner", help="Where the shortcut marker goes: the blank corner, or inside the body below the lungs."
    ),
):
    """Write synthetic chest X-ray phantoms with lung and lesion masks (Kermany layout)."""

    if out.exists() and any(out.iterdir()):
        raise PneumocamError(f"{out} exists and is not empty: choose a new folder (nothing is overwritten)")
    counts = {k: v for k, v in (("train", train), ("val", val), ("test", test)) if v > 0}
    written = write_phantom_dataset(out, counts, size=image_size, seed=seed, shortcut=shortcut, marker=marker.value)
    console.print(
        f"phantoms written to {escape(str(written.images))}; masks in {escape(str(written.lung_masks.parent))}"
    )


@clean_errors
def manifest(
    layout: str = typer.Argument(..., help="nih, rsna, chexpert or mimic."),
    images: Path = typer.Option(..., help="The image folder as the set ships it."),
    out: Path = typer.Option(..., help="The manifest CSV to write (path,label,patient_id,split)."),
    labels: Optional[Path] = typer.Option(
        None, help="Label CSV (NIH, RSNA: TorchXRayVision's copy if omitted; CheXpert train.csv; MIMIC …-chexpert.csv)."
    ),
    metadata: Optional[Path] = typer.Option(
        None, help="MIMIC: …-metadata.csv (views); RSNA: stage_2_detailed_class_info.csv (NORMAL = class Normal)."
    ),
    views: str = typer.Option("PA,AP", help="Views to keep, comma-separated ('*': all)."),
):
    """A NORMAL / PNEUMONIA manifest from a public set's layout (labels read by TorchXRayVision)."""

    if out.exists():
        raise PneumocamError(f"{out} exists: choose a new file (nothing is overwritten)")
    found = public_manifest(
        layout,
        str(images),
        str(labels) if labels else None,
        str(metadata) if metadata else None,
        [v.strip() for v in views.split(",") if v.strip()],
    )
    if not found.rows:
        raise PneumocamError(f"no NORMAL or PNEUMONIA films found in {images} with {layout}'s labels ({found.rule})")
    write_csv(out, ["path", "label", "patient_id", "split"], found.rows)
    counts = found.counts()
    console.print(
        f"{escape(str(out))}: {counts.get('NORMAL', 0)} NORMAL, {counts.get('PNEUMONIA', 0)} PNEUMONIA films "
        f"({escape(found.rule)})"
    )
    for reason, n in sorted(found.left_out.items()):
        console.print(f"left out: {n} films, {escape(reason)}")


def print_metrics(result: dict) -> None:
    """metrics.json on the terminal: per-class tables at each threshold, AUC with its interval, the leakage verdict."""
    weights = result.get("weights") or {}
    if started_random(weights):
        console.print(f"[bold red]{escape(weights.get('description', 'random initialisation'))}[/]")
    for i, member in enumerate((result.get("ensemble") or {}).get("members", []), start=1):
        described = (member.get("weights") or {}).get("description", "weights not recorded")
        console.print(
            f"member {i}: ROC-AUC {member['roc_auc']:.3f}, {escape(member['checkpoint'])} ({escape(described)})"
        )
    tta = result.get("tta")
    if tta:
        views = ", ".join(f"{v} {auc:.3f}" for v, auc in tta["roc_auc_per_view"].items())
        console.print(f"test-time augmentation: {tta['combination']}; ROC-AUC per view: {views}")
    for name, m in result["metrics"].items():
        table = Table(title=f"{result['split']} split, {name} = {m['threshold']:.3f} (n = {m['n']})")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for cls, row in (*m["per_class"].items(), ("macro avg", m["macro_avg"]), ("weighted avg", m["weighted_avg"])):
            table.add_row(
                cls, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])
            )
        console.print(table)
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        ci = (
            ""
            if not m["roc_auc_ci95"]
            else f" (95% CI {m['roc_auc_ci95'][0]:.3f}-{m['roc_auc_ci95'][1]:.3f}, by {m['roc_auc_ci_unit']})"
        )
        console.print(
            f"accuracy {m['accuracy']:.3f}, ROC-AUC {auc}{ci}, sensitivity {m['sensitivity']}, specificity "
            f"{m['specificity']}"
        )
    leakage = result.get("leakage") or {}
    counts = [
        leakage.get(k)
        for k in (
            "n_images_seen_in_training",
            "n_images_seen_in_selection",
            "n_patients_shared_with_training",
            "n_patients_shared_with_selection",
        )
    ]
    if not leakage.get("recorded", True):
        console.print("[yellow]leakage not checked: the checkpoint does not record what it was trained on[/]")
    elif any(counts):
        console.print(
            f"[bold red]LEAKAGE:[/] images seen in training {counts[0]}, in selection {counts[1]}; patients shared "
            "with "
            f"training {counts[2]}, with selection {counts[3]} (list in leakage.csv)"
        )
    else:
        console.print(
            f"leakage check: no evaluated image or patient was used in training or selection "
            f"({leakage.get('n_images_evaluated')} images)"
        )
    guard = result.get("guard")
    if guard:
        fitted = "" if guard["fitted"] else " (input checks only: this model has no fitted guard, see `guard fit`)"
        kept = (guard.get("metrics_in_distribution") or {}).get(decision_key(result["metrics"]))
        on_kept = (
            f"; on the {kept['n']} in-distribution films: accuracy {kept['accuracy']:.3f}, "
            f"ROC-AUC {kept['roc_auc']:.3f}"
            if kept and kept.get("roc_auc") is not None
            else ""
        )
        console.print(
            f"domain-shift guard{fitted}: {guard['n_flagged']} films flagged ({guard['share_flagged']:.1%}) "
            f"{guard['reasons']}{on_kept}"
        )
