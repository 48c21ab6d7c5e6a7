"""Commands over finished run folders: `pneumocam report` (render again), `pneumocam compare` (two runs), and
`pneumocam merge` (the shards' parts into one run folder: it reruns the later stages of the pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from pneumocam.analysis.compare import compare_runs
from pneumocam.cli.errors import clean_errors, console
from pneumocam.core.defaults import PAIRED_RESAMPLES, SEED
from pneumocam.core.outputs import mark_complete, new_run_folder, write_json
from pneumocam.pipeline.merge import merge_parts
from pneumocam.report import render


@clean_errors
def report(
    run_dir: Path = typer.Argument(..., help="A finished `pneumocam run` folder (it may come from another machine)."),
    out: Optional[Path] = typer.Option(
        None, help="Write report.html and report.md here instead of into the run folder."
    ),
):
    """Render report.html and report.md again from a run folder alone: no model, no data needed."""

    html_path, md_path = render(run_dir, out)
    console.print(f"[green]report:[/] {escape(str(html_path))} and {escape(str(md_path))}")


@clean_errors
def compare(
    run_a: Path = typer.Argument(..., help="The baseline run folder (A)."),
    run_b: Path = typer.Argument(..., help="The run folder to compare with it (B), evaluated on the same images."),
    out: Optional[Path] = typer.Option(None, help="Folder for compare.json (a fresh folder inside it)."),
    bootstrap: int = typer.Option(PAIRED_RESAMPLES, help="Paired bootstrap resamples (patients resampled when known)."),
    seed: int = typer.Option(SEED, help="Seed of the bootstrap."),
):
    """B minus A on the same images: ROC-AUC and accuracy with paired CIs; region shares and pointing game per class."""

    result = compare_runs(run_a, run_b, bootstrap, seed)
    cls = result["classification"]
    table = Table(
        title=f"{cls['n_images']} shared images; CIs resample {cls['resampled_unit']}s ({cls['n_resamples']} draws)"
    )
    for column in ("measure", "A", "B", "B - A", "95% CI"):
        table.add_column(column)
    for name in ("roc_auc", "accuracy"):
        row = cls[name]
        table.add_row(
            name,
            f"{row['A']:.3f}",
            f"{row['B']:.3f}",
            f"{row['difference']:+.3f}",
            f"{row['ci95'][0]:+.3f} to {row['ci95'][1]:+.3f}",
        )
    for measure, by_class in result["attention"].items():
        for label, row in by_class.items():
            if row["n"]:
                p = "n/a" if row["wilcoxon_p"] is None else f"Wilcoxon p {row['wilcoxon_p']:.2e}"
                table.add_row(
                    f"{measure} ({label})", f"{row['A']:.3f}", f"{row['B']:.3f}", f"{row['B'] - row['A']:+.3f}", p
                )
    reliance = result.get("reliance")
    if reliance:  # the check that reads no map: the same for both models
        for name, row in reliance["roc_auc"].items():
            table.add_row(
                f"reliance roc_auc: {name}", f"{row['A']:.3f}", f"{row['B']:.3f}", f"{row['B'] - row['A']:+.3f}", ""
            )
    console.print(table)
    for side in ("A", "B"):
        against = result["trained_against"][side]
        if against:
            console.print(
                f"{side} was trained against {against['explanation']} (attention penalty {against['weight']:g}): "
                "its region measures from that method are not independent evidence"
            )
        if reliance:
            console.print(f"{side}: {reliance['verdict'][side]}")
    if out is not None:
        folder = new_run_folder(out, prefix="compare")
        write_json(folder / "compare.json", result)
        mark_complete(folder)
        console.print(f"[green]written:[/] {escape(str(folder / 'compare.json'))}")


@clean_errors
def merge(
    parts: list[Path] = typer.Argument(..., help="The part folders of `run --shard i/N`, every shard once."),
    out: Path = typer.Option(Path("runs"), help="Parent folder for the merged run folder."),
):
    """The run folder (metrics, maps, statistics, report) one process would have written, from every shard's part."""

    folder = merge_parts(parts, out)
    console.print(f"[green]report:[/] {escape(str(folder / 'report.html'))}")
