"""Mutation testing of the modules that compute reported numbers (pyproject.toml [tool.mutmut]: only_mutate), with
mutmut; the survivors per module go into a record. Not run in CI: it runs the selected tests once per mutant.

    python benchmarks/mutation.py [--max-children 2] [--record mutmut] [NAME ...]

NAME: mutants to run (mutmut's names, `*` allowed, e.g. 'pneumocam.evaluation.*' or one survivor's name); every
mutant is reported, those not run keep their earlier result or "not checked".

Exits 1 when mutmut fails or a mutant survives. Each survivor is listed by name (`mutmut show NAME` prints its diff);
one that cannot change a reported number is marked in EQUIVALENT with the reason.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).with_name("mutmut")
# Survivors read and judged equivalent (no reported number can change), by mutant name: why.
EQUIVALENT: dict[str, str] = {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    parser.add_argument(
        "--collect-only", action="store_true", help="Read the results of an earlier (possibly stopped) run only."
    )
    parser.add_argument("names", nargs="*", help="Only these mutants (mutmut's names; * allowed).")
    args = parser.parse_args(argv)
    stamped = stamp()
    command = [str(MUTMUT), "run", "--max-children", str(args.max_children), *args.names]
    ran = subprocess.run(["true"] if args.collect_only else command, cwd=ROOT)
    listed = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True)
    statuses = {}
    for line in listed.stdout.splitlines():
        name, _, status = line.strip().partition(": ")
        if status:
            statuses[name] = status
    module = lambda name: name.split(".x")[0]  # noqa: E731  (pneumocam.evaluation.metrics.x_youden__mutmut_3)
    per_module: dict[str, Counter] = {}
    for name, status in statuses.items():
        per_module.setdefault(module(name), Counter())[status] += 1
    survivors = sorted(n for n, s in statuses.items() if s == "survived")
    unchecked = sum(1 for s in statuses.values() if s == "not checked")
    unexplained = [n for n in survivors if n not in EQUIVALENT]
    figures = {
        "mutants": len(statuses),
        "per_module": {m: dict(c) for m, c in sorted(per_module.items())},
        "survivors": survivors,
        "equivalent": {n: EQUIVALENT[n] for n in survivors if n in EQUIVALENT},
        "unexplained_survivors": unexplained,
        "mutmut_exit": ran.returncode,
        "not_checked": unchecked,  # mutants a stopped run did not reach
    }
    for m, counts in figures["per_module"].items():
        print(f"{m}: {dict(counts)}")
    print(f"{len(survivors)} survived ({len(unexplained)} not marked equivalent)")
    if args.record:
        note = "mutmut over pyproject.toml's only_mutate, each mutant against the selected tests"
        if args.names:
            note += f"; this run ran {' '.join(args.names)}, the other mutants keep the results of earlier runs"
        if args.collect_only:
            note += (
                "; collected from an earlier run (possibly stopped: see not_checked), whose mutants ran against the "
                "tests of the tree mutmut copied when that run started, not necessarily this record's commit"
            )
        write_record(args.record, figures, note=note, stamped=stamped)
    return 0 if ran.returncode == 0 and not unexplained and not unchecked else 1


if __name__ == "__main__":
    sys.exit(main())
