"""pneumocam's Python API: audit any chest X-ray classifier from a notebook, with the results the CLI writes.

    import pneumocam.api as pc
    session = pc.open_model(my_net, output="Pneumonia", labels=my_labels, layer="features.denseblock4")
    films = pc.read_films("chest_xray", split="test", size=224)
    maps = pc.explain(session, films)                  # Grad-CAM, explain.cam.CamResult
    verdict = pc.reliance(session, films)["verdict"]   # does the decision rest on the lungs?
    run = pc.audit(my_net_spec_or_session, "chest_xray", eval_split="test")   # the whole run folder and report

Every function takes and returns the dataclasses and dicts the CLI writes to a run folder (docs/results.md), so a
notebook's numbers and a `pneumocam run` folder's are the same numbers. The CLI is a thin layer over the same
pipeline (pipeline.experiment.run_experiment).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from pneumocam.analysis.importance import importance_scores
from pneumocam.analysis.regions import split_attention
from pneumocam.analysis.reliance import reliance_check
from pneumocam.analysis.stats import group_statistics
from pneumocam.core.defaults import ALPHA, BATCH_SIZE, BOOTSTRAP_RESAMPLES, IMAGE_SIZE, N_DRAWS, N_PER_CLASS, SEED
from pneumocam.data import LoadedImages, discover, load_images
from pneumocam.explain.cam import CamResult, make_cam
from pneumocam.model.adapter import ClassifierAdapter, Reading, from_module
from pneumocam.model.foreign import module_metadata
from pneumocam.model.forward import predict_logits
from pneumocam.model.network import probability
from pneumocam.model.session import InferenceSession, load_model
from pneumocam.pipeline.config import ExperimentConfig
from pneumocam.pipeline.experiment import run_experiment
from pneumocam.report import render
from pneumocam.train.config import TrainConfig

__all__ = [
    "ClassifierAdapter",
    "InferenceSession",
    "Reading",
    "audit",
    "compare_classes",
    "explain",
    "importance",
    "open_model",
    "predict",
    "read_films",
    "regions",
    "reliance",
    "report",
]


def open_model(model, device: str = "cpu", **declared) -> InferenceSession:
    """The model every other function asks: a pneumocam model.pt's path, a foreign spec string (`KIND:SOURCE,...`,
    model.foreign), or a torch module with what it declares (ClassifierAdapter's arguments: output, labels,
    activation, reading, layer). An adapter or a session is taken as it is."""
    if isinstance(model, InferenceSession):
        return model
    if isinstance(model, nn.Module):
        adapter = model if isinstance(model, ClassifierAdapter) else from_module(model, **declared)
        adapter = adapter.to(device).eval()
        return InferenceSession.of_model(adapter, module_metadata(adapter), None, device)
    net, meta = load_model(model, device)
    return InferenceSession.of_model(net, meta, str(model), device)


def read_films(data: str | os.PathLike, split: str = "test", size: int = IMAGE_SIZE) -> LoadedImages:
    """The films of a dataset's split (a Kermany-layout folder, a CSV manifest or WebDataset shards) at `size` px,
    grey uint8; unreadable files are in `.skipped` with their reason."""
    return load_images(discover(data).split(split), size, description=f"Reading {split}")


def predict(session: InferenceSession, films: LoadedImages, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """p(PNEUMONIA) per film: sigmoid of the model's PNEUMONIA logit (for a softmax model, of that class's logit
    against the others: the softmax probability)."""
    with session.running():
        logits = predict_logits(session.model, films.images, batch_size, session.device)
    return probability(logits)


def explain(
    session: InferenceSession, films: LoadedImages, method: str = "gradcam", target: str = "pred", batch_size=BATCH_SIZE
) -> CamResult:
    """Class activation maps on the layer the model declares. Grad-CAM (Selvaraju et al., ICCV 2017):
    M = ReLU(sum_k alpha_k A^k), alpha_k = mean over positions of dy/dA^k, y the explained class's score (the logit
    for PNEUMONIA, its negative for NORMAL). Other methods: explain.cam.METHODS. target: pred | true | NORMAL |
    PNEUMONIA."""
    cam = make_cam(session.model, method, batch_size=batch_size, device=session.device)
    with session.running():
        return cam(films.images, target=target, labels=films.labels, description=method)


def importance(maps: CamResult, size: int) -> dict[str, np.ndarray]:
    """Per-film scores of the maps, upsampled to `size` (analysis.importance.SCORES): the original write-up's
    "importance" is mean_maxnorm, the mean of M / max(M); mean_raw the mean of M; top10_mass the share of sum M in
    its top 10% pixels. An empty map scores NaN."""
    return importance_scores(maps.maps, size, normalised=maps.normalised)


def regions(films: LoadedImages, maps: CamResult, lung_masks: str | None = None) -> tuple[dict, dict]:
    """(per-film region shares, per-class means): the share of each map's mass in each anatomical region
    (core.schema.REGIONS: lungs, diaphragm band, rest of the body, outside the body), share_r = sum_{p in r} M(p) /
    sum_p M(p), with lungs from the masks under lung_masks where present, else the classical estimate."""
    columns, summary, _ = split_attention(films, maps.maps, films.images.shape[-1], films.labels, lung_masks)
    return columns, summary


def reliance(
    session: InferenceSession,
    films: LoadedImages,
    lung_masks: str | None = None,
    batch_size: int = BATCH_SIZE,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> dict:
    """Does the decision rest on the lungs? No map is read: the model's ROC-AUC on the films as they are, with the
    lungs removed and with only the lungs kept (remove-and-classify; Hooker et al., NeurIPS 2019). With
    s(v) = (AUC(v) - 0.5) / (AUC(whole) - 0.5): "rests on the lungs" when s(lungs removed) <= 0.5 and s(only the
    lungs) >= 0.9, and removing the lungs keeps at least 0.2 less of it than removing a region of their shape and
    area elsewhere (analysis.reliance.RULE). results.json's "reliance" record, its controls (the shape-matched
    region, ROAD imputation) included."""
    with session.running():
        summary, _ = reliance_check(
            session.model, session.reads, films, lung_masks, None, batch_size, session.device, bootstrap, seed
        )
    return summary


def compare_classes(
    scores: dict[str, np.ndarray],
    labels,
    n_per_class: int | None = N_PER_CLASS,
    n_draws: int = N_DRAWS,
    alpha: float = ALPHA,
    seed: int = SEED,
) -> dict:
    """NORMAL against PNEUMONIA for each score, as the original protocol did (n_per_class random films per class;
    None: all) and with its repeats: Welch's t-test (scipy.stats.ttest_ind, equal_var=False), Mann-Whitney U, and
    Cohen's d = (mean_1 - mean_0) / s_pooled with its confidence interval; over n_draws draws, the share that
    rejects at alpha. stats.json's layout."""
    statistics, _ = group_statistics(scores, np.asarray(labels), n_per_class, n_draws, alpha, seed)
    return statistics


def audit(
    model,
    data: str | os.PathLike,
    out: str | os.PathLike = "runs",
    eval_split: str = "test",
    lung_masks: str | None = None,
    device: str = "cpu",
    **settings,
) -> Path:
    """The whole audit of `model` (open_model's forms) on `data`'s eval_split into a fresh run folder under `out`:
    metrics, maps, regions, reliance, trust checks, statistics and the report, as `pneumocam run --model` writes
    them. settings: ExperimentConfig's fields (method, n_per_class, bootstrap, trust_images, ...)."""
    session = open_model(model, device)
    train = TrainConfig(data=str(data), weights="none", device=device, image_size=session.reads.image_size)
    masks = {"lungs": str(lung_masks)} if lung_masks else {}
    label = session.checkpoint or f"python:{type(getattr(session.model, 'net', session.model)).__name__}"
    config = ExperimentConfig(train=train, eval_split=eval_split, checkpoint=label, masks=masks, **settings)
    return run_experiment(config, runs_dir=out, session=replace(session, checkpoint=label))


def report(run_dir: str | os.PathLike) -> Path:
    """report.html and report.md of a run folder, rendered again from its files (no model, no torch needed)."""
    render(Path(run_dir))
    return Path(run_dir) / "report.html"
