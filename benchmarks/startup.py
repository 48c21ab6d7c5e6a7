"""How long the command line takes to answer `--version` and `--help`, as ratios to `python -c pass` measured in the
same run, beside what the eager command line cost (importing the whole typer app, as `--version` did before
cli/entry.py). Each command runs in a fresh interpreter, interleaved, `--repeats` times; medians are compared.

    python benchmarks/startup.py [--repeats 9] [--record startup]

Exits 1 when `--version` or `--help` costs more than TARGET_RATIO x `python -c pass`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import stamp, write_record  # noqa: E402

TARGET_RATIO = 4.0  # --version / --help against a bare interpreter start
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "pneumocam --version": [sys.executable, "-m", "pneumocam", "--version"],
    "pneumocam --help": [sys.executable, "-m", "pneumocam", "--help"],
    "import pneumocam.cli.app (the eager command line)": [sys.executable, "-c", "import pneumocam.cli.app"],
}


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    args = parser.parse_args(argv)
    stamped = stamp()  # the tree and machine as measuring starts
    for command in COMMANDS.values():
        timed(command)  # warm the file cache once
    seconds = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            seconds[name].append(timed(command))
    medians = {name: statistics.median(found) for name, found in seconds.items()}
    base = medians["python -c pass"]
    figures = {
        "repeats": args.repeats,
        "median_s": medians,
        "ratio_to_python": {name: medians[name] / base for name in COMMANDS},
        "target_ratio": TARGET_RATIO,
    }
    for name in COMMANDS:
        print(f"{name:<52} {medians[name]:.3f} s  {figures['ratio_to_python'][name]:5.1f}x python -c pass")
    missed = [n for n in ("pneumocam --version", "pneumocam --help") if figures["ratio_to_python"][n] > TARGET_RATIO]
    figures["target_met"] = not missed
    if args.record:
        write_record(args.record, figures, note="fresh interpreter per call, interleaved; medians", stamped=stamped)
    if missed:
        print(f"missed the target ({TARGET_RATIO}x python -c pass): {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
