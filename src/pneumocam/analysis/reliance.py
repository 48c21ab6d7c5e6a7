"""What the decision rests on, measured with no explanation method: the model's probability on each film as it is,
with its lungs removed, and with only its lungs kept (a remove-and-classify ablation, no retraining).

A map can be trained to sit on the lungs while the decision still reads something else (the `focused` recipe's
Grad-CAM penalty moves the map; whether it moves the decision is a separate question). This check reads no map,
so it is the same for every model and a model trained to please an explanation cannot please it.

Removal replaces pixels behind a feathered edge, so the model is not shown a sharp outline of the lungs, and
each variant removes its region whole: the feather lies outside what is removed. With L the lung mask, G the
Gaussian smoothing (sigma: FEATHER of the side), D and E dilation and erosion by EDGE sigmas, and r the
replacement,
    w_removed = max(L, G(D(L)))   (1 on every lung pixel, fading out over the tissue around them)
    w_kept    = L G(E(L))         (0 on every pixel outside the lungs, fading in inside their edge)
    lungs removed:  x (1 - w_removed) + r w_removed          only the lungs:  x w_kept + r (1 - w_kept)
The feather was first centred on the lung edge: "lungs removed" then left a faded rim of lung tissue that a model
shown only the lungs could still read (the recommended model's AUC with its lungs removed: 0.801 centred, 0.627
with the removal grown 2 sigma; benchmarks/results/reliance-edge-recommended.json).
for two replacements: `fill`, a constant grey (FILL_GREY: the grey --focus and occlusion use, the ImageNet mean
that the model's normalisation maps to zero, so a removed part looks like what --focus already hides), and `blur`, the
film under a heavy Gaussian blur (sigma: BLUR of the side), which keeps brightness and layout but not texture.
The variants are read as the model reads any film (its --focus included). Inputs like these are unlike the
training films, so the probabilities say how the decision depends on each part, not how the model would do on
real films without lungs (Hooker et al. 2019, "A benchmark for interpretability methods in deep neural networks").

The verdict (RULE) uses the fill removal. With s(v) = (AUC(v) - 0.5) / (AUC(whole film) - 0.5), the share of the
whole film's ranking above chance that a variant keeps: "rests on the lungs" when s(lungs removed) <= 0.5 and
s(only the lungs) >= 0.9; "rests largely outside the lungs" when s(only the lungs) < 0.5; otherwise "mixed".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter
from scipy.stats import spearmanr

from pneumocam import CLASS_NAMES
from pneumocam.analysis.controls import CONTROL_DRAWS, control_regions, impute
from pneumocam.anatomy.focus import NEUTRAL_GREY
from pneumocam.anatomy.lungs import LungModel, body_mask, classical_lungs
from pneumocam.core.defaults import BOOTSTRAP_RESAMPLES, SEED
from pneumocam.core.progress import track
from pneumocam.data import LoadedImages
from pneumocam.data.masks import load_masks_and_ignore
from pneumocam.evaluation.metrics import bootstrap_cis, operating_points
from pneumocam.model.forward import predict_logits
from pneumocam.model.inputs import ModelInputs
from pneumocam.model.network import probability

FILL_GREY = float(NEUTRAL_GREY)
FEATHER = 0.02  # of the side: the soft edge of the lung mask
EDGE = 2.0  # feather sigmas between what is removed and where its feather ends (the weight there is about 2%)
BLUR = 0.08  # of the side: the heavy blur of the `blur` replacement
REMOVALS = ("fill", "blur")
VARIANTS = ("whole", *(f"{part}_{removal}" for removal in REMOVALS for part in ("lungs_removed", "only_lungs")))
CONTROLS = ("lungs_removed_impute", "control_removed_fill")  # the run's check adds these (analysis/controls.py)
RULE = {
    "removed_at_most": 0.5,
    "only_lungs_at_least": 0.9,
    "outside_below": 0.5,
    "removal": "fill",
    "control_margin": 0.2,  # removing the lungs keeps at least this much less of the ranking than the control does
}


def removal_weights(lungs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w_removed, w_kept) of the lung mask (bool, H x W): the weight of the replacement over the lungs with its
    feather outside them, and the weight of the film kept inside them with its feather inside them."""
    lungs = np.asarray(lungs, dtype=bool)
    sigma = FEATHER * lungs.shape[-1]
    steps = max(1, round(EDGE * sigma))
    grown = gaussian_filter(binary_dilation(lungs, iterations=steps).astype(np.float32), sigma)
    shrunk = gaussian_filter(binary_erosion(lungs, iterations=steps).astype(np.float32), sigma)
    return np.clip(np.maximum(grown, lungs), 0.0, 1.0), np.clip(shrunk, 0.0, 1.0) * lungs


def replacement(gray: np.ndarray, removal: str) -> np.ndarray:
    if removal == "fill":
        return np.full(gray.shape, FILL_GREY, dtype=np.float32)
    if removal == "blur":
        return gaussian_filter(gray.astype(np.float32), BLUR * gray.shape[-1])
    raise ValueError(f"removal must be one of {', '.join(REMOVALS)}, got '{removal}'")


def variant_images(gray: np.ndarray, lungs: np.ndarray) -> dict[str, np.ndarray]:
    """Every VARIANTS image of one film (uint8, H x W; lungs: bool, H x W)."""
    x, (removed, kept) = gray.astype(np.float32), removal_weights(lungs)
    out = {"whole": gray}
    for removal in REMOVALS:
        r = replacement(gray, removal)
        out[f"lungs_removed_{removal}"] = x * (1 - removed) + r * removed
        out[f"only_lungs_{removal}"] = x * kept + r * (1 - kept)
    return {k: np.clip(np.rint(v), 0, 255).astype(np.uint8) for k, v in out.items()}


def verdict(auc: dict[str, float]) -> tuple[str, dict[str, float]]:
    """(the plain verdict, the share of the whole film's ranking above chance each variant keeps)."""
    above = auc["whole"] - 0.5
    kept = {k: (v - 0.5) / above if above > 0 else float("nan") for k, v in auc.items() if k != "whole"}
    removed, only = kept[f"lungs_removed_{RULE['removal']}"], kept[f"only_lungs_{RULE['removal']}"]
    if not above > 0:
        return "undetermined: the model ranks the whole films no better than chance", kept
    control = kept.get("control_removed_fill")
    if removed <= RULE["removed_at_most"] and only >= RULE["only_lungs_at_least"]:
        if control is not None and not control - removed >= RULE["control_margin"]:
            return (
                "mixed: removing a region of the lungs' shape and area elsewhere on the body costs about as much as "
                "removing the lungs",
                kept,
            )
        return "the decision rests on the lungs", kept
    if only < RULE["outside_below"]:
        return "the decision rests largely outside the lungs", kept
    return "mixed: the decision rests on the lungs and on what lies outside them", kept


def reliance_summary(
    probs: dict[str, np.ndarray],
    labels: np.ndarray,
    patients=None,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> dict:
    """results.json's "reliance": per variant the mean probability per class and the ROC-AUC with its percentile
    bootstrap interval (patients resampled when known), then the verdict."""
    labels = np.asarray(labels)
    groups = np.asarray(patients, dtype=object) if patients is not None and all(patients) else None
    table = {}
    for name in (*VARIANTS, *(c for c in CONTROLS if c in probs)):
        p = np.asarray(probs[name], dtype=np.float64)
        cis = bootstrap_cis(labels, p, n_resamples, seed, groups=groups) if n_resamples else {}
        table[name] = {
            "mean_probability": {CLASS_NAMES[c]: float(p[labels == c].mean()) for c in (0, 1)},
            "roc_auc": operating_points(labels, p)["roc_auc"],
            "roc_auc_ci95": list(cis["roc_auc"]) if cis else None,
        }
    said, kept = verdict({k: v["roc_auc"] for k, v in table.items()})
    return {
        "variants": table,
        "share_of_ranking_kept": kept,
        "verdict": said,
        "rule": RULE,
        "n_images": int(len(labels)),
        "resampled_unit": "patient" if groups is not None else "image",
        "settings": {
            "fill_grey": FILL_GREY,
            "feather_sigma_share": FEATHER,
            "feather": f"outside what is removed ({EDGE:g} sigmas)",
            "blur_sigma_share": BLUR,
        },
        "controls": None
        if "control_removed_fill" not in probs
        else {
            "control": "the lung mask moved (or mirrored top to bottom) to overlap the lungs least, on the film and "
            f"mostly on the body; up to {CONTROL_DRAWS} draws per film, their probabilities averaged",
            "mean_overlap_with_lungs": float(np.nanmean(probs["control_overlap"])),
            "imputation": "ROAD's noisy linear imputation (Rong et al. 2022) of the region the fill removal replaces",
        },
    }


def film_lungs(loaded: LoadedImages, lung_root: str | None, lung_model: str | None) -> tuple[np.ndarray, list[str]]:
    """(lungs bool (N, H, W), source per film): the mask where one exists (its 'ignore' pixels count as lung field:
    a device over a lung is removed with it), else the learned lung model, else the classical estimate."""
    size = loaded.images.shape[-1]
    if lung_root:
        masks, found, ignore = load_masks_and_ignore(lung_root, loaded.samples, size)
        masks |= ignore
    else:
        masks, found = np.zeros(loaded.images.shape, dtype=bool), np.zeros(len(loaded.samples), dtype=bool)
    estimator = LungModel.load(lung_model) if lung_model else None
    sources = []
    for i, gray in enumerate(loaded.images):
        if found[i]:
            sources.append("mask")
        elif estimator is not None:
            masks[i] = estimator.predict(gray)
            sources.append("estimated (learned model)")
        else:
            masks[i] = classical_lungs(gray, body=body_mask(gray))
            sources.append("estimated (classical)")
    return masks, sources


def control_images(gray: np.ndarray, lungs: np.ndarray) -> tuple[dict[str, list[np.ndarray]], float]:
    """The controls of one film (analysis/controls.py): {variant: its images (one per control draw)}, and the
    controls' mean overlap with the lungs. lungs_removed_impute: the region the fill removal replaces (its weight
    above 5%), imputed; control_removed_fill: each shape-matched region removed as the lungs are."""
    regions, overlap = control_regions(lungs, body_mask(gray))
    removed = removal_weights(lungs)[0] > 0.05
    controls = [variant_images(gray, region)["lungs_removed_fill"] for region in regions] or [gray]
    return {"lungs_removed_impute": [impute(gray, removed)], "control_removed_fill": controls}, overlap


def reliance_probabilities(
    model,
    reads: ModelInputs,
    loaded: LoadedImages,
    lungs: np.ndarray,
    batch_size: int,
    device,
    controls: bool = False,
    **lung_source,
) -> dict[str, np.ndarray]:
    """p(PNEUMONIA) of every film in every variant, each variant read as the model reads a film (reads.inputs,
    with the run's lung source for a --focus lungs crop: lung_masks / lung_model). controls: also CONTROLS (a
    control's probability is the mean over its draws) and "control_overlap", the controls' mean overlap with the
    lungs per film."""
    pairs = list(zip(loaded.images, lungs))
    films = [variant_images(gray, mask) for gray, mask in track(pairs, "Reliance variants")]
    out = {}

    def probabilities(images: list[np.ndarray], name: str) -> np.ndarray:
        inputs = reads.inputs(replace(loaded, images=np.stack(images)), **lung_source)
        return probability(predict_logits(model, inputs.images, batch_size, device, description=f"Reliance {name}"))

    for name in VARIANTS:
        out[name] = probabilities([f[name] for f in films], name)
    if controls:
        found = [control_images(gray, mask) for gray, mask in track(pairs, "Reliance controls")]
        out["control_overlap"] = np.array([overlap for _, overlap in found])
        for name in CONTROLS:
            draws = max(len(images[name]) for images, _ in found)
            # a film with fewer draws repeats its last one, so the mean is over what it has
            per_draw = [[i[name][min(d, len(i[name]) - 1)] for i, _ in found] for d in range(draws)]
            per_draw = [probabilities(images, name) for images in per_draw]
            out[name] = np.mean(per_draw, axis=0)
    return out


def reliance_check(
    model, reads: ModelInputs, loaded: LoadedImages, lung_masks, lung_model, batch_size: int, device, n_resamples, seed
) -> tuple[dict, dict[str, np.ndarray]]:
    """The whole check as `run` and the Python API make it: (results.json's "reliance" record, the per-film
    probabilities of every variant and control). Lungs from the masks, else the lung model, else the estimate."""
    lungs, sources = film_lungs(loaded, lung_masks, lung_model)
    probs = reliance_probabilities(
        model, reads, loaded, lungs, batch_size, device, controls=True, lung_masks=lung_masks, lung_model=lung_model
    )
    patients = [s.patient_id for s in loaded.samples]
    summary = reliance_summary(probs, loaded.labels, patients, n_resamples, seed)
    return summary | {"lung_sources": {k: sources.count(k) for k in sorted(set(sources))}}, probs


def reliance_by_group(probs: dict[str, np.ndarray], labels, groups) -> dict[str, dict]:
    """The check per group of films (a population; None rows left out), without bootstrap intervals: each variant's
    ROC-AUC, the share of the whole films' ranking each keeps, and the verdict. A group holding one class only has
    no ranking to keep: its verdict says so."""
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    out = {}
    for name in sorted({g for g in groups if g is not None}, key=str):
        member = groups == name
        y = labels[member]
        if y.min() == y.max():
            out[str(name)] = {"n_images": int(member.sum()), "verdict": "undetermined: the group holds one class"}
            continue
        summary = reliance_summary({k: np.asarray(v)[member] for k, v in probs.items()}, y, None, 0)
        out[str(name)] = {
            "n_images": int(member.sum()),
            "roc_auc": {k: v["roc_auc"] for k, v in summary["variants"].items()},
            "share_of_ranking_kept": summary["share_of_ranking_kept"],
            "verdict": summary["verdict"],
        }
    return out


AGREEMENT_RHO = 0.3  # a map "tracks" the intervention when its lung share correlates at least this much (p < 0.05)


def map_agreement(lung_share, probs: dict[str, np.ndarray], targets, method: str) -> dict:
    """Does the map predict what the intervention does (Viviano et al. 2021; Zhang et al. 2023)? Per film, the
    Spearman rank correlation between the map's share of mass on the lungs and the drop of the explained class's
    probability when the lungs are removed (grey fill): p_t(whole) - p_t(lungs removed), p_t = p for PNEUMONIA,
    1 - p for NORMAL. Films with no map share (empty maps) are left out."""
    share = np.asarray(lung_share, dtype=np.float64)
    sign = np.where(np.asarray(targets) == 1, 1.0, -1.0)
    drop = sign * (np.asarray(probs["whole"]) - np.asarray(probs["lungs_removed_fill"]))
    kept = np.isfinite(share) & np.isfinite(drop)
    if kept.sum() < 3 or np.ptp(share[kept]) == 0 or np.ptp(drop[kept]) == 0:
        return {"method": method, "n_films": int(kept.sum()), "spearman": None, "p": None, "tracks": None}
    found = spearmanr(share[kept], drop[kept])
    rho, p = float(found.statistic), float(found.pvalue)
    return {
        "method": method,
        "n_films": int(kept.sum()),
        "spearman": rho,
        "p": p,
        "tracks": bool(rho >= AGREEMENT_RHO and p < 0.05),
        "measure": "Spearman rho of the map's lung share and the explained class's probability drop with the lungs "
        "removed (grey fill), per film",
    }
