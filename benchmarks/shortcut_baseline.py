"""The shortcut baseline (analysis/shortcut.py: no model, the acquisition's traces only) on the Kermany train split and
on the second population (nih-adult), with the features that carry it.

    python benchmarks/shortcut_baseline.py [--record shortcut-baseline]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.analysis.shortcut import describe, film_groups, shortcut_baseline, shortcut_features  # noqa: E402
from pneumocam.data import discover, load_images  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "kermany224 train": (SHARED / "kermany224", "train"),
    "nih-adult": (SHARED / "nih-adult" / "manifest.csv", "train"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    args = parser.parse_args(argv)
    stamped = stamp()
    figures = {}
    for name, (root, split) in SETS.items():
        loaded = load_images(discover(root).split(split), 224, description=f"Reading {name}")
        features, names = shortcut_features(loaded)
        figures[name] = describe(shortcut_baseline(features, loaded.labels, film_groups(loaded.samples)), names)
        record = figures[name]
        carried = ", ".join(f"{c['feature']} ({c['coefficient']:+.2f})" for c in record["carried_by"])
        print(f"{name}: ROC-AUC {record['roc_auc']:.3f} on {record['n_films']} films; carried by {carried}")
    if args.record:
        note = "no model: logistic regression on file and border traces, out-of-fold by patient (5 folds)"
        write_record(args.record, figures, note=note, stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
