"""A Kermany-only model on a second population (nih-adult): ROC-AUC, the decision at its recorded threshold and at
the travelling rules (evaluation/populations.py), its guard's share flagged, and ROC-AUC per view, sex and age band.

    python benchmarks/populations.py RUN/train/model.pt [--record populations-scratch]

A model trained on a manifest of datasets (kermany + nih) is measured on its own held-out patients instead: ROC-AUC
per population and per view within each (trained_on_populations).

Kermany: the model's own held-out patients (its recorded plan) and its validation films (rebuilt from its recorded
settings: the sensitivity-target rule is chosen there). nih-adult: all 1,000 films of ../shared/data/nih-adult.
Exits 1 when the model or a film set cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402
from sklearn.covariance import LedoitWolf  # noqa: E402

from pneumocam.analysis.shortcut import film_traces  # noqa: E402
from pneumocam.core.schema import FIXED_THRESHOLD  # noqa: E402
from pneumocam.data import discover, load_images  # noqa: E402
from pneumocam.data.split import choose_validation  # noqa: E402
from pneumocam.evaluation.evaluate import predict  # noqa: E402
from pneumocam.evaluation.populations import group_metrics, strata_metrics, travelling_thresholds  # noqa: E402
from pneumocam.model.network import resolve_device  # noqa: E402
from pneumocam.model.session import InferenceSession  # noqa: E402
from pneumocam.pipeline.config import evaluated_samples  # noqa: E402
from pneumocam.train.config import TrainConfig  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def predictions(session: InferenceSession, samples, name: str):
    loaded = load_images(samples, session.reads.image_size, description=f"Reading {name}")
    loaded = session.reads.inputs(loaded)
    with session.running():
        found = predict(session.model, loaded, 64, session.device, guard=session.guard, assess=True)
    by_path = {s.path: s for s in loaded.samples}
    traces = {s.path: film_traces(image) for s, image in zip(loaded.samples, loaded.images)}
    return found, [by_path[p] for p in found.paths], np.array([traces[p] for p in found.paths])


def input_statistics_guard(fitted_on: np.ndarray, sets: dict[str, np.ndarray], passing: float = 0.95) -> dict:
    """A candidate guard on the film alone (analysis.shortcut.film_traces: intensity histogram, border mean and std):
    the Mahalanobis distance to the fitting films (Ledoit-Wolf covariance), flagged beyond the distance `passing`
    of those films stay within. Share flagged per set."""
    covariance = LedoitWolf().fit(fitted_on)
    limit = float(np.quantile(covariance.mahalanobis(fitted_on), passing))
    return {name: float(np.mean(covariance.mahalanobis(x) > limit)) for name, x in sets.items()} | {
        "fitted_on": "the Kermany validation films",
        "passing": passing,
    }


def trained_on_populations(session: InferenceSession, checkpoint: Path) -> dict | None:
    """For a model trained on a manifest of datasets (two populations or more): its own held-out patients (every
    population's, by patient id), ROC-AUC and the decisions per population, and per view within each population that
    records one. None for a model trained on one population."""
    index = discover(session.meta["config"]["data"])
    if len({s.population for s in index.samples if s.population}) < 2:
        return None
    held = evaluated_samples(index, "heldout", session.meta, checkpoint)
    found, samples, _ = predictions(session, held, "held-out patients")
    thresholds = {"fixed_0.5": FIXED_THRESHOLD, "recorded": session.threshold}
    populations = np.array([s.population for s in samples], dtype=object)
    flagged = [not v.in_distribution for v in found.verdicts]
    by_view = {}
    for name in sorted(set(populations)):
        member = populations == name
        strata = [s.strata for s, m in zip(samples, member) if m]
        if any(strata):
            by_view[name] = strata_metrics(found.labels[member], found.probs[member], strata, thresholds).get("view")
    return {
        "checkpoint": str(checkpoint),
        "trained_on": session.meta["config"]["data"],
        "recipe": session.meta.get("config", {}).get("recipe"),
        "schedule": session.meta.get("config", {}).get("size_schedule"),
        "image_size": session.reads.image_size,
        "threshold_recorded": session.threshold,
        "threshold_chosen": session.threshold_source,
        "n_heldout": len(samples),
        "heldout_by_population": group_metrics(found.labels, found.probs, populations, thresholds, flagged),
        "heldout_by_view": by_view,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--kermany", type=Path, default=SHARED / "kermany224")
    parser.add_argument("--nih", type=Path, default=SHARED / "nih-adult" / "manifest.csv")
    parser.add_argument("--record", default=None, help="Also write benchmarks/results/NAME.json.")
    parser.add_argument(
        "--baseline-guard", type=Path, default=None,
        help="The same model with another guard (e.g. before `guard fit` refitted it): its shares flagged beside.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    stamped = stamp()
    device = resolve_device("auto")
    session = InferenceSession.open(args.checkpoint, device)
    mixed = trained_on_populations(session, args.checkpoint)
    if mixed is not None:
        for name, row in mixed["heldout_by_population"].items():
            print(f"{name:<10} held-out AUC {row['roc_auc']:.3f} (n {row['n']}), guard {row['share_flagged']:.1%}")
        for name, views in mixed["heldout_by_view"].items():
            print(name, {v: (row["n"], row["roc_auc"]) for v, row in views.items()})
        if args.record:
            note = "a model trained on every population of its manifest; its own held-out patients"
            write_record(args.record, mixed, note=note, stamped=stamped)
        return 0
    config = TrainConfig(**{k: v for k, v in session.meta["config"].items() if k in TrainConfig.__dataclass_fields__})
    index = discover(args.kermany)
    _, validation, _ = choose_validation(
        index, config.val_source, config.val_fraction, config.data_seed, holdout_fraction=config.holdout_fraction,
        val_family=config.val_family,
    )  # fmt: skip
    sets = {
        "kermany_validation": validation,
        "kermany_heldout": evaluated_samples(index, "heldout", session.meta, args.checkpoint),
        "nih_adult": discover(args.nih).samples,
    }
    found = {name: predictions(session, samples, name) for name, samples in sets.items()}
    thresholds = {"fixed_0.5": FIXED_THRESHOLD, "recorded": session.threshold}
    val, _, val_traces = found["kermany_validation"]
    tested = ["kermany_heldout", "nih_adult"]
    labels = np.concatenate([found[n][0].labels for n in tested])
    probs = np.concatenate([found[n][0].probs for n in tested])
    groups = [n for n in tested for _ in found[n][0].paths]
    flagged = {n: float(np.mean([not v.in_distribution for v in found[n][0].verdicts])) for n in tested}
    nih, nih_samples, _ = found["nih_adult"]
    baseline = None
    if args.baseline_guard:
        other = InferenceSession.open(args.baseline_guard, device)
        baseline = {
            "checkpoint": str(args.baseline_guard),
            "guard": (other.guard.fitted_on or {}).get("features") if other.guard else None,
        } | {
            n: float(np.mean([not v.in_distribution for v in predictions(other, sets[n], n)[0].verdicts]))
            for n in tested
        }
    candidate = input_statistics_guard(val_traces, {n: found[n][2] for n in tested})
    figures = {
        "checkpoint": str(args.checkpoint),
        "recipe": session.meta.get("config", {}).get("recipe"),
        "schedule": session.meta.get("config", {}).get("size_schedule"),
        "image_size": session.reads.image_size,
        "threshold_recorded": session.threshold,
        "threshold_chosen": session.threshold_source,
        "n_films": {n: len(found[n][0].paths) for n in found},
        "by_population": group_metrics(labels, probs, groups, thresholds),
        "travelling": travelling_thresholds(val.labels, val.probs, labels, probs, groups, session.threshold),
        "guard_share_flagged": flagged,
        "input_statistics_guard_share_flagged": candidate,
        "baseline_guard_share_flagged": baseline,
        "guard_reasons_nih": dict(Counter(v.ood_reason.split(" (")[0] for v in nih.verdicts if not v.in_distribution)),
        "nih_by_stratum": strata_metrics(
            nih.labels,
            nih.probs,
            [s.strata for s in nih_samples],
            thresholds,
            [not v.in_distribution for v in nih.verdicts],
        ),  # fmt: skip
    }
    for name, row in figures["by_population"].items():
        at = row["at"]["recorded"]
        print(
            f"{name:<16} AUC {row['roc_auc']:.3f} at recorded {at['threshold']:.3f}: sens {at['sensitivity']:.3f} "
            f"spec {at['specificity']:.3f}  guard {flagged[name]:.1%}, input-statistics guard {candidate[name]:.1%}"
        )
    for name, rules in figures["travelling"]["populations"].items():
        shown = {
            k: tuple(None if v[m] is None else round(v[m], 3) for m in ("sensitivity", "specificity"))
            for k, v in rules.items()
        }
        print(name, "(sensitivity, specificity) per rule:", shown)
    for value, row in figures["nih_by_stratum"].get("view", {}).items():
        print(f"nih view {value}: n {row['n']}, AUC {row['roc_auc']}")
    if args.record:
        note = "Kermany-only model on nih-adult; the sets as the docstring says"
        write_record(args.record, figures, note=note, stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
