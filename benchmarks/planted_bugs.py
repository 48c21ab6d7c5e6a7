"""Plant each bug an audit found surviving the tests, one at a time, and run the tests that should catch it.

Each plant is a small, realistic change to one source line (a string replacement that must match exactly once); the
script applies it, runs the named test file(s) with `-x`, restores the file whatever happens, and prints KILLED (a
test failed) or SURVIVED. It exits 1 when any plant survives. A script, never a test: it edits the working tree.

    python benchmarks/planted_bugs.py [--record planted-bugs]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import stamp, write_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pneumocam"

# (name, file, the line as it is, the line with the bug, the tests that must catch it)
PLANTS = (
    (
        "films without a patient id merged into one bootstrap cluster",
        "evaluation/metrics.py",
        'else f"file:{p}" for p in paths',
        'else "file:unknown" for p in paths',
        ["tests/test_metrics.py"],
    ),
    (
        "reject_null from Student's p instead of Welch's",
        "analysis/stats.py",
        '"reject_null": bool(welch.pvalue < alpha)',
        '"reject_null": bool(student.pvalue < alpha)',
        ["tests/test_stats.py"],
    ),
    (
        "per-class region means with the classes swapped",
        "analysis/regions.py",
        'columns[f"{prefix}_{r}"][labels == c]',
        'columns[f"{prefix}_{r}"][labels == 1 - c]',
        ["tests/test_regions.py"],
    ),
    (
        "mask value 127 not left out of region shares",
        "analysis/regions.py",
        "maps = maps * ~ignore.reshape(len(ignore), -1)",
        "maps = maps * 1",
        ["tests/test_regions.py"],
    ),
    (
        "mask value 127 not counted in the reliance check's lungs",
        "analysis/reliance.py",
        "masks |= ignore",
        "masks |= False",
        ["tests/test_reliance.py"],
    ),
    (
        "ECE as an unweighted mean over bins",
        "evaluation/calibration.py",
        'sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])',
        'sum(abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / sum(1 for b in bins if b["count"])',
        ["tests/test_calibration.py"],
    ),
    (
        "training and selection patient counts swapped",
        "evaluation/leakage.py",
        "len(patients & train_patients),\n        len(patients & select_patients),",
        "len(patients & select_patients),\n        len(patients & train_patients),",
        ["tests/test_leakage.py"],
    ),
)


def run_plant(file: Path, before: str, after: str, tests: list[str]) -> tuple[bool, float]:
    """(killed, seconds): the tests run against the planted line; the file is restored afterwards."""
    original = file.read_text()
    if original.count(before) != 1:
        raise SystemExit(f"{file.relative_to(ROOT)}: the line to plant in is not there exactly once: {before!r}")
    began = time.perf_counter()
    try:
        file.write_text(original.replace(before, after))
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        file.write_text(original)
    return done.returncode != 0, time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    args = parser.parse_args(argv)
    stamped = stamp()  # commit and tree as they are before anything is planted
    outcomes = []
    for name, relative, before, after, tests in PLANTS:
        killed, seconds = run_plant(SRC / relative, before, after, tests)
        outcomes.append({"bug": name, "file": relative, "tests": tests, "killed": killed, "seconds": round(seconds, 1)})
        print(f"{'KILLED  ' if killed else 'SURVIVED'} {name} ({relative}; {', '.join(tests)}; {seconds:.0f} s)")
    survived = [o["bug"] for o in outcomes if not o["killed"]]
    if args.record:
        figures = {"plants": outcomes, "killed": len(outcomes) - len(survived), "survived": len(survived)}
        write_record(args.record, figures, note="one plant at a time, its tests run with -x", stamped=stamped)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
