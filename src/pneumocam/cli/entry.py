"""The `pneumocam` console script: `--version` and `--help` answer from this module alone, any command loads the app.

No torch, matplotlib, OpenCV, scikit-learn or FastAPI for those two (tests/test_architecture.py checks it in a
subprocess); any command imports the typer app of cli/app.py by name and runs it. Each command's one-line summary
is declared here, once: the app registers its commands with these summaries.
"""

from __future__ import annotations

import importlib
import sys

from pneumocam import __version__

APP_MODULE = "pneumocam.cli.app"  # imported by name on first use of a command: the heavy part of the command line
HELP = "Explainable pneumonia detection on chest X-rays: train, evaluate, explain, test, report."
SUMMARIES = {
    "serve": "A web page to drop a film and see the answer, its map and where it looks, and to browse runs; JSON API.",
    "data": "Check a dataset before a long run: counts, unreadable files, the validation split.",
    "manifest": "A NORMAL / PNEUMONIA manifest from a public set's layout (labels read by TorchXRayVision).",
    "phantoms": "Write synthetic chest X-ray phantoms with lung and lesion masks (Kermany layout).",
    "report": "Render report.html and report.md again from a run folder alone: no model, no data needed.",
    "compare": "B minus A on the same images: ROC-AUC and accuracy with paired CIs; region shares and pointing game.",
    "merge": "The run folder (metrics, maps, statistics, report) one process would have written, from every shard.",
    "stats": "Compare a score between NORMAL and PNEUMONIA: Student, Welch, Mann-Whitney, permutation, effect sizes.",
    "predict": "Probability, the decision at the model's threshold (and at 0.5), and an overlay per image.",
    "explain": "Where the model looks and whether its explanation can be trusted, on an existing model.",
    "train": "Train the classifier; the best epoch on validation becomes RUN/model.pt.",
    "evaluate": "Metrics at 0.5 and at the model's threshold; predictions.csv decided at the model's threshold.",
    "run": "Train, evaluate, Grad-CAM, importance scores, statistics and report, in one fresh run folder.",
    "demo": "The whole experiment on synthetic phantoms generated on the fly (no data, no downloads, a few minutes).",
    "lungs": "Lung-field estimates for images without masks.",
    "guard": "The domain-shift guard stored in model.pt.",
    "webdataset": "WebDataset tar shards for archives too big for a folder walk.",
}


def version_text() -> str:
    return f"pneumocam {__version__}"


def top_help() -> str:
    """`pneumocam --help`: the commands and their summaries (each command's own --help loads it)."""
    width = max(map(len, SUMMARIES))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, summary in SUMMARIES.items())
    return (
        f"Usage: pneumocam [--version] [--help] COMMAND [ARGS]...\n\n  {HELP}\n\n"
        f"Options:\n  --version  Print the version and exit.\n  --help     Show this message and exit.\n\n"
        f"Commands (pneumocam COMMAND --help for each):\n{rows}"
    )


def main(argv: list[str] | None = None) -> None:  # the console script
    """--version and --help (or no arguments) answer here; anything else runs the typer app of cli/app.py."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], [], ["--help"]):
        try:
            print(version_text() if args == ["--version"] else top_help())
        except BrokenPipeError:  # `pneumocam --help | head`: the reader left, nothing to say
            sys.stderr.close()
    else:
        importlib.import_module(APP_MODULE).app(args=args, prog_name="pneumocam")
