"""The whole experiment in one folder, as named stages (read run_experiment first).

prepare -> train or load -> explain the evaluated split -> score the maps -> group statistics -> write the run
-> render the report. Each stage returns a small dataclass; the analysis lives in the modules it names
(regions, trust, stats, report), so this file only sequences them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pneumocam.analysis.importance import SCORES, compared_scores, empty_summary, importance_scores
from pneumocam.analysis.regions import ground_truth_summary, mask_measures, split_attention
from pneumocam.analysis.reliance import map_agreement, reliance_by_group, reliance_check
from pneumocam.analysis.shortcut import describe, film_groups, shortcut_baseline, shortcut_features
from pneumocam.analysis.stats import group_statistics
from pneumocam.analysis.trust import trust_checks
from pneumocam.core.errors import PneumocamError
from pneumocam.core.messages import warn
from pneumocam.core.outputs import INCOMPLETE_MARKER, is_complete, mark_complete, new_run_folder, write_csv, write_json
from pneumocam.core.precision import resolve_precision
from pneumocam.core.provenance import environment, library_versions
from pneumocam.core.schema import CONFIG, PREDICTIONS
from pneumocam.data import LoadedImages, discover, load_images
from pneumocam.evaluation.evaluate import (
    Predictions,
    checkpoint_thresholds,
    guard_record,
    metrics_at_thresholds,
    population_records,
)
from pneumocam.evaluation.leakage import Leakage, check_leakage, enforce, refuse_seen
from pneumocam.explain.cam import CamResult, make_cam
from pneumocam.explain.occlusion import default_window, occlusion_maps
from pneumocam.model.inputs import ModelInputs
from pneumocam.model.network import load_checkpoint, resolve_device
from pneumocam.model.session import InferenceSession
from pneumocam.pipeline.config import ExperimentConfig, evaluated_samples, validate_experiment
from pneumocam.pipeline.models import foreign_guard, open_model
from pneumocam.pipeline.runfolder import RunFolder, trained_against, write_run
from pneumocam.pipeline.shards import save_part, shard_samples
from pneumocam.report import render
from pneumocam.train.config import TrainConfig
from pneumocam.train.fit import fit

__all__ = ["ExperimentConfig", "resume_experiment", "run_experiment"]


@dataclass
class Trained:
    session: InferenceSession  # the model and how it answers: inputs, guard, threshold, device, precision
    training: dict | None  # train_summary.json when this run trained the model

    @property
    def model(self) -> torch.nn.Module:
        return self.session.model

    @property
    def meta(self) -> dict:
        return self.session.meta

    @property
    def checkpoint(self) -> Path:
        return Path(self.session.checkpoint)


@dataclass
class Explained:
    loaded: LoadedImages  # the films
    cam: CamResult  # maps on the films' grid (put back from the focused crop with --focus)
    metrics: dict
    thresholds: dict
    leakage: Leakage
    inputs: LoadedImages  # what the model read: the films, or their focused crops
    input_cam: CamResult  # maps on the inputs' grid (the trust checks perturb the inputs)
    focus: dict
    in_distribution: np.ndarray  # bool per image: the domain-shift guard's verdict
    guard: dict  # metrics.json's "guard"
    verdicts: list  # guard.Verdict per image
    groups: dict | None = None  # metrics.json's by_population and by_stratum (evaluate.population_records)


@dataclass
class Scored:
    scores: dict[str, np.ndarray]
    empty: dict
    ground_truth: dict
    attention: dict
    lung_sources: list[str] | None
    trust: dict | None
    reliance: dict | None = None  # what the decision rests on (analysis/reliance.py); None when not measured
    independent: dict | None = None  # occlusion region measures, for a model trained against its maps
    shortcut: dict | None = None  # the no-model baseline on the evaluated films (analysis/shortcut.py)


def run_experiment(
    cfg: ExperimentConfig,
    runs_dir: str | Path | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    on_start=None,
    computed=None,
    session: InferenceSession | None = None,
) -> Path:
    """Run every stage into a fresh folder under runs_dir (or run_dir; resume=True continues an interrupted one).

    Returns the run folder: config.json, train/, metrics.json, leakage.csv, predictions.csv, heatmaps.npz,
    importance.csv, stats.json, results.json, figures/, report.html, report.md, skipped.csv.
    With cfg.shard the folder holds that shard's part only (shards.py); computed (the merge) supplies the
    Grad-CAM results instead of computing them. session: a model already open (the Python API's, for a module in
    memory), used instead of cfg.checkpoint; its device and precision are its own.
    """

    # Device and precision resolved once, here: every later stage receives them.
    if session is not None:
        device, precision = session.device, session.precision
    else:
        device = resolve_device(cfg.train.device)
        precision = resolve_precision(cfg.train.precision, device)
    preloaded = prepare(cfg, device, session)
    run_dir = open_run_folder(cfg, runs_dir, run_dir, resume, on_start)
    trained = train_or_load(cfg, run_dir, resume, preloaded, device, precision)
    # Every forward pass after training (evaluation, Grad-CAM, trust checks) in the run's precision.
    with trained.session.running():
        explained = explain_split(cfg, trained, run_dir, device, computed)
        if explained is None:  # a shard: its part is written
            mark_complete(run_dir)
            return run_dir
        scored = score_maps(cfg, trained, explained, device)
    statistics, notes = compare_classes(cfg, explained, scored)
    write_run(cfg, run_dir, trained, explained, scored, statistics, notes)
    render(run_dir)
    mark_complete(run_dir)
    return run_dir


def compare_classes(cfg: ExperimentConfig, explained: Explained, scored: Scored) -> tuple[dict, dict]:
    """stats.json: every compared score, NORMAL vs PNEUMONIA, in the `stats` command's layout. Films the guard
    flagged are left out (their scores describe another population) unless cfg.include_ood."""
    keep = np.ones(len(explained.loaded.labels), dtype=bool) if cfg.include_ood else explained.in_distribution
    labels = explained.loaded.labels[keep]
    scores = compared_scores({k: np.asarray(v)[keep] for k, v in scored.scores.items()}, labels)
    statistics, notes = group_statistics(
        scores, labels, cfg.n_per_class, cfg.n_draws, cfg.alpha, cfg.train.seed, SCORES
    )
    notes = dict(notes) | {"out_of_distribution_left_out": int((~keep).sum())}
    return statistics, notes


def prepare(cfg: ExperimentConfig, device, session: InferenceSession | None = None):
    """Check every setting before anything is written; load a given checkpoint (its held-out plan is checked too)."""
    validate_experiment(cfg)
    if cfg.checkpoint is None:
        return None
    if session is not None:
        preloaded = session
    else:
        preloaded = open_model(cfg.checkpoint, device, cfg.train.data, cfg.eval_split, cfg.train.batch_size)
    meta = preloaded.meta if session is not None else preloaded[1]
    samples = evaluated_samples(discover(cfg.train.data), cfg.eval_split, meta, cfg.checkpoint)
    if cfg.strict:  # a leaking split stops before any folder is made
        refuse_seen(meta, samples)
    return preloaded


def open_run_folder(cfg: ExperimentConfig, runs_dir, run_dir, resume: bool, on_start) -> Path:
    run_dir = Path(run_dir) if run_dir else new_run_folder(runs_dir, prefix="run")
    if on_start is not None:
        on_start(run_dir)
    if not resume:  # written first, so an interrupted run can be resumed from its folder alone
        write_json(
            run_dir / CONFIG,
            {"experiment": cfg.to_dict(), "versions": library_versions(), "environment": environment()},
        )
    return run_dir


def train_or_load(cfg: ExperimentConfig, run_dir: Path, resume: bool, preloaded, device, precision) -> Trained:
    """Train into RUN/train (continuing an interrupted training on resume), or take the given checkpoint."""

    if isinstance(preloaded, InferenceSession):
        return Trained(with_foreign_guard(cfg, preloaded), None)
    if preloaded is not None:
        model, meta = preloaded
        model = model.to(memory_format=torch.channels_last)
        session = InferenceSession.of_model(model, meta, cfg.checkpoint, device, precision)
        return Trained(with_foreign_guard(cfg, session), None)
    train_dir = run_dir / "train"
    if resume and (train_dir / "checkpoints" / "last.pt").is_file():
        if not (is_complete(train_dir) and (train_dir / "train_summary.json").is_file()):
            fit(None, run_dir=train_dir, resume=True)
    else:
        train_dir.mkdir(exist_ok=True)
        (train_dir / INCOMPLETE_MARKER).write_text("this training has not finished\n")
        fit(cfg.train, run_dir=train_dir)
    model, meta = load_checkpoint(train_dir / "model.pt", device)
    training = json.loads((train_dir / "train_summary.json").read_text())
    model = model.to(memory_format=torch.channels_last)
    return Trained(InferenceSession.of_model(model, meta, train_dir / "model.pt", device, precision), training)


def with_foreign_guard(cfg: ExperimentConfig, session: InferenceSession) -> InferenceSession:
    """The session, with a guard fitted on cfg.guard_films when a foreign model was given them."""
    if not cfg.guard_films:
        return session
    guard = foreign_guard(
        session.model, cfg.guard_films, cfg.train.batch_size, session.device, session.reads.image_size
    )
    return replace(session, guard=guard)


def explain_split(cfg: ExperimentConfig, trained: Trained, run_dir: Path, device, computed=None) -> Explained | None:
    """Read the evaluated split, check it against what the model saw, and run one Grad-CAM pass: its forward
    gives the predictions, its backward through the head the maps. A shard writes its part and returns None."""

    size = int(trained.meta.get("image_size", cfg.train.image_size))
    samples = evaluated_samples(discover(cfg.train.data), cfg.eval_split, trained.meta, trained.checkpoint)
    if cfg.shard:
        samples = shard_samples(samples, cfg.shard)
    loaded = load_images(samples, size, use_cache=cfg.train.use_cache, description=f"Reading {cfg.eval_split}")
    if len(set(loaded.labels.tolist())) < 2 and not cfg.shard:
        raise PneumocamError(f"the {cfg.eval_split} split holds one class only after skipping unreadable files")
    leakage = check_leakage(trained.meta, loaded.samples)
    enforce(leakage, cfg.strict, warn)
    inputs, film, focus = focus_inputs(cfg, trained.session.reads, loaded)
    if computed is not None:
        on_film, result = computed(loaded.paths)
    else:
        cam = make_cam(trained.model, cfg.method, batch_size=cfg.train.batch_size, device=device)
        result = cam(
            inputs.images, target=cfg.target, labels=loaded.labels, description=f"{cfg.method} ({cfg.eval_split})"
        )
        on_film = film(result)
    if cfg.shard:
        save_part(run_dir, loaded.paths, on_film, result)
        return None
    session = trained.session
    found = session.verdicts(result.features, loaded.paths, loaded.images)
    patients = [s.patient_id for s in loaded.samples]
    predictions = Predictions(loaded.paths, loaded.labels, result.probs, patients, found)
    thresholds, described = checkpoint_thresholds(trained.meta)
    metrics = metrics_at_thresholds(predictions, thresholds, cfg.bootstrap, cfg.train.seed)
    groups = population_records(predictions, loaded.samples, thresholds)
    guarded = guard_record(predictions, thresholds, session.guard, cfg.bootstrap, cfg.train.seed)
    if guarded["n_flagged"]:
        warn(f"domain-shift guard: {guarded['n_flagged']} films flagged {guarded['reasons']}")
    write_csv(run_dir / PREDICTIONS, Predictions.HEADER, predictions.rows(session.threshold))
    kept = np.array([v.in_distribution for v in found], dtype=bool)
    return Explained(loaded, on_film, metrics, described, leakage, inputs, result, focus, kept, guarded, found, groups)


def focus_inputs(cfg: ExperimentConfig, reads: ModelInputs, loaded: LoadedImages):
    """(what the model reads, a function putting its maps back on the films, the focus record for results.json):
    the checkpoint's --focus, with lungs from this run's masks, else its lung model, else the estimate."""
    if not reads.focused:
        return loaded, lambda result: result, {"mode": "none"}
    focused = reads.read(loaded, cfg.masks.get("lungs"), cfg.lung_model)
    size = loaded.images.shape[-1]
    box_area = (focused.boxes[:, 1] - focused.boxes[:, 0]) * (focused.boxes[:, 3] - focused.boxes[:, 2]) / size**2
    record = {
        "mode": reads.focus,
        "mean_box_area_share": float(box_area.mean()),
        "lung_sources": {s: focused.lung_sources.count(s) for s in sorted(set(focused.lung_sources))},
    }
    return (
        focused.inputs(loaded),
        lambda result: replace(result, maps=reads.on_film(result.maps, focused.boxes)),
        record,
    )


def score_maps(cfg: ExperimentConfig, trained: Trained, explained: Explained, device) -> Scored:
    """Per-image scores (importance, mask shares, regions) and the trust checks."""

    loaded, result, labels = explained.loaded, explained.cam, explained.loaded.labels
    size = loaded.images.shape[-1]
    scores = importance_scores(result.maps, size, normalised=result.normalised)
    ground_truth = {}
    for name, root in cfg.masks.items():
        if name == "lungs" and cfg.regions:
            continue  # measured with the other anatomical regions
        share, hit, found, area = mask_measures(root, loaded.samples, result.maps, size)
        scores[f"{name}_mass_share"], scores[f"{name}_pointing_hit"] = share, hit
        ground_truth[name] = ground_truth_summary(share, hit, found, area)
    attention, sources = {}, None
    if cfg.regions:
        columns, attention, sources = split_attention(
            loaded, result.maps, size, labels, cfg.masks.get("lungs"), cfg.lung_model
        )
        scores.update(columns)
    trust = (
        trust_checks(
            trained.model,
            explained.inputs,
            explained.input_cam,
            labels,
            cfg.trust_images,
            cfg.trust_steps,
            cfg.train.seed,
            device,
        )
        if cfg.trust_images > 0
        else None
    )
    relied = None
    if cfg.reliance:
        relied, film_probs = decision_reliance(cfg, trained, explained, device)
        populations = [s.population for s in explained.loaded.samples]
        if len({p for p in populations if p}) >= 2:
            relied["by_population"] = reliance_by_group(film_probs, labels, populations)
        if "share_lungs" in scores:
            relied["map_agreement"] = map_agreement(scores["share_lungs"], film_probs, result.targets, cfg.method)
    independent = (
        independent_attention(cfg, trained, explained, device)
        if cfg.regions and cfg.occlusion_films and trained_against(trained.meta)
        else None
    )
    shortcut = None
    if len(labels) >= 10 and len(set(labels.tolist())) == 2:  # at least two films a fold
        features, names = shortcut_features(loaded)
        shortcut = describe(shortcut_baseline(features, labels, film_groups(loaded.samples), cfg.train.seed), names)
    return Scored(
        scores, empty_summary(result.maps, labels), ground_truth, attention, sources, trust, relied, independent,
        shortcut,
    )  # fmt: skip


def independent_attention(cfg: ExperimentConfig, trained: Trained, explained: Explained, device) -> dict:
    """results.json's "independent_attention": region measures of occlusion maps (explain/occlusion.py), which read
    no gradient and no layer4, on a class-balanced random sample of cfg.occlusion_films films, for a model whose
    training penalised its Grad-CAM or input-gradient map."""
    loaded, labels = explained.loaded, explained.loaded.labels
    rng = np.random.default_rng(cfg.train.seed)
    per_class = cfg.occlusion_films // 2
    chosen = [
        rng.choice(np.flatnonzero(labels == c), min(per_class, int((labels == c).sum())), replace=False) for c in (0, 1)
    ]
    idx = np.sort(np.concatenate(chosen))
    sample = replace(loaded, samples=[loaded.samples[i] for i in idx], images=np.asarray(loaded.images[idx]))
    reads, lung_root = trained.session.reads, cfg.masks.get("lungs")
    focused = reads.read(sample, lung_root, cfg.lung_model) if reads.focused else None
    maps = occlusion_maps(trained.model, sample.images if focused is None else focused.images, sample.labels, device)
    if focused is not None:
        maps = reads.on_film(maps, focused.boxes, grid=maps.shape[-1])
    side = sample.images.shape[-1]
    _, summary, _ = split_attention(sample, maps, side, sample.labels, lung_root, cfg.lung_model)
    window, stride = default_window(reads.image_size)
    return summary | {
        "method": "occlusion",
        "settings": {"window": window, "stride": stride, "baseline": "neutral grey", "target": "the film's label"},
        "n_films": int(len(idx)),
        "sample": "random, class-balanced, seed = the run's",
    }


def decision_reliance(cfg: ExperimentConfig, trained: Trained, explained: Explained, device) -> tuple[dict, dict]:
    """results.json's "reliance" (analysis.reliance.reliance_check: it reads no map, the same check for every model)
    and the per-film probabilities the map agreement reads."""
    return reliance_check(
        trained.model, trained.session.reads, explained.loaded, cfg.masks.get("lungs"), cfg.lung_model,
        cfg.train.batch_size, device, cfg.bootstrap, cfg.train.seed,
    )  # fmt: skip


def resume_experiment(run_dir: str | Path, on_start=None) -> Path:
    """Finish an interrupted `pneumocam run` folder: training resumes where it stopped, then every later stage."""

    folder = RunFolder(run_dir)
    values = dict(folder.experiment)
    if folder.complete:
        raise PneumocamError(f"{run_dir} is already complete: nothing to resume")
    cfg = ExperimentConfig(train=TrainConfig(**values.pop("train")), **values)
    return run_experiment(cfg, run_dir=folder.path, resume=True, on_start=on_start)
