"""Is the explanation trustworthy? Two checks on a sample of images.

- Model-parameter randomisation (Adebayo et al. 2018): re-initialise the head, then layer4, layer3, ...
  cumulatively, and compare each randomised model's maps with the trained model's (Spearman rank
  correlation of the raw maps, SSIM of the per-image normalised maps). Maps that barely change are
  not explaining what the model learned; such a method is flagged.
- Seed repeatability (`map_similarity` between two models of one recipe trained with different seeds, on the same
  films): maps that move with the seed as much as with randomised weights say more about the seed than the data.
- Faithfulness: deletion (remove the most relevant pixels first, watch the target probability fall)
  and insertion (add them to a blurred film first, watch it rise), as areas under the curves, for the
  maps and for random maps. A faithful map deletes faster and inserts faster than random.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import torch
from scipy import stats as st

from pneumocam.core.defaults import BATCH_SIZE, SEED
from pneumocam.data import balanced_indices, to_model_input
from pneumocam.explain.cam import make_cam, normalise_per_image, upsample
from pneumocam.model.network import probability

CASCADE = ("fc", "layer4", "layer3", "layer2", "layer1", "conv1")
FLAG_SPEARMAN = (
    0.5  # rank correlation still above this with the head and with layer4 randomised: the maps ignore the weights
)


def cascade(model: torch.nn.Module) -> tuple[str, ...]:
    """The randomisation cascade, output to input: pneumocam's ResNet50 by its stages; any other network by its
    top-level parameterised blocks (a Sequential, such as DenseNet's `features`, opened one level), last first."""
    if all(hasattr(model, name) for name in CASCADE):
        return CASCADE
    net = getattr(model, "net", model)  # a ClassifierAdapter's network
    prefix = "net." if net is not model else ""
    blocks = []
    for name, child in net.named_children():
        inner = child.named_children() if isinstance(child, torch.nn.Sequential) else ()
        parts = [(f"{name}.{sub}", block) for sub, block in inner] or [(name, child)]
        blocks += [prefix + n for n, block in parts if any(True for _ in block.parameters())]
    return tuple(reversed(blocks))


def _reinitialise(module: torch.nn.Module) -> None:
    for sub in module.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()


def map_similarity(first: np.ndarray, second: np.ndarray, size: int) -> dict:
    """How alike two sets of maps of the same films are, film by film: the Spearman rank correlation of the raw maps
    (NaN for a constant map) and SSIM (Wang et al. 2004, scikit-image) of the maps upsampled to `size` and each
    normalised to [0, 1]. Means over the films (Spearman over those where it is defined) and the per-film values."""
    from skimage.metrics import (
        structural_similarity,  # deferred: scikit-image is slow to import; only the map comparisons need it
    )

    rho = np.array(
        [
            st.spearmanr(a.ravel(), b.ravel()).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
            for a, b in zip(first, second)
        ]
    )
    first_up, second_up = (normalise_per_image(upsample(m, size)) for m in (first, second))
    ssim = np.array([structural_similarity(a, b, data_range=1.0) for a, b in zip(first_up, second_up)])
    return {
        "n_films": int(len(first)),
        "spearman_mean": float(np.nanmean(rho)) if np.isfinite(rho).any() else None,
        "ssim_mean": float(ssim.mean()) if len(ssim) else None,
        "spearman": rho.tolist(),
        "ssim": ssim.tolist(),
    }


def randomisation_test(
    model,
    images: np.ndarray,
    targets: np.ndarray,
    method: str = "gradcam",
    seed: int = SEED,
    batch_size: int = BATCH_SIZE,
    reference: np.ndarray | None = None,
) -> dict:
    """reference: the trained model's maps for these images and targets, when already computed."""
    size = images.shape[-1]
    if reference is None:
        reference = make_cam(model, method, batch_size=batch_size)(
            images, target="true", labels=targets, description="Maps (trained)"
        ).maps
    randomised = copy.deepcopy(model)
    torch.manual_seed(seed)
    rows = []
    stages = cascade(model)
    for stage in stages:
        _reinitialise(randomised.get_submodule(stage))
        maps = make_cam(randomised, method, batch_size=batch_size)(
            images, target="true", labels=targets, description=f"Maps (random up to {stage})"
        ).maps
        found = map_similarity(reference, maps, size)
        rows.append(
            {"randomised_up_to": stage, "spearman_mean": found["spearman_mean"], "ssim_mean": found["ssim_mean"]}
        )
    top = [r["spearman_mean"] for r in rows[:2]]  # the head and the last block (ResNet50: fc, layer4)
    flagged = all(value is not None and value > FLAG_SPEARMAN for value in top)
    return {
        "method": method,
        "n_images": int(len(images)),
        "seed": seed,
        "cascade": rows,
        "flagged": bool(flagged),
        "verdict": (
            "FLAGGED: the maps barely change when the model's weights are randomised, so they do not reflect what it "
            "learned"
            if flagged
            else "the maps change when the weights are randomised, as an explanation of the trained model should"
        ),
    }


@torch.inference_mode()
def _target_probability(model, batch: np.ndarray, targets: np.ndarray, device) -> np.ndarray:
    logits = (
        model(to_model_input(torch.from_numpy(np.ascontiguousarray(batch)).to(device))).flatten().double().cpu().numpy()
    )
    p = probability(logits)
    return np.where(targets == 1, p, 1.0 - p)


def deletion_insertion(
    model, images: np.ndarray, maps: np.ndarray, targets: np.ndarray, steps: int = 10, seed: int = SEED, device="cpu"
) -> dict:
    """Areas under the deletion and insertion curves for the maps and for random maps (same images, same steps)."""

    model.eval()
    size = images.shape[-1]
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), size / 16) for im in images])
    result = {}
    for name, relevance in (("maps", upsample(maps, size)), ("random", rng.random((len(images), size, size)))):
        # Order pixels from most to least relevant; a tiny jitter breaks ties on flat map regions.
        order = np.argsort(-(relevance + 1e-9 * rng.random(relevance.shape)).reshape(len(images), -1), axis=1)
        deletion, insertion = np.zeros((len(images), len(fractions))), np.zeros((len(images), len(fractions)))
        for i in range(len(images)):
            original, blur = images[i].ravel(), blurred[i].ravel()
            deleted, inserted = [], []
            for f in fractions:
                top = order[i, : int(round(f * size * size))]
                d, s = original.copy(), blur.copy()
                d[top], s[top] = blur[top], original[top]
                deleted.append(d.reshape(size, size)), inserted.append(s.reshape(size, size))
            target = np.full(len(fractions), targets[i])
            deletion[i] = _target_probability(model, np.stack(deleted), target, device)
            insertion[i] = _target_probability(model, np.stack(inserted), target, device)
        result[name] = {
            "deletion_auc": float(np.trapezoid(deletion.mean(axis=0), fractions)),
            "insertion_auc": float(np.trapezoid(insertion.mean(axis=0), fractions)),
            "deletion_curve": deletion.mean(axis=0).tolist(),
            "insertion_curve": insertion.mean(axis=0).tolist(),
        }
    better = (
        result["maps"]["deletion_auc"] < result["random"]["deletion_auc"],
        result["maps"]["insertion_auc"] > result["random"]["insertion_auc"],
    )
    return {
        "fractions": fractions.tolist(),
        "n_images": int(len(images)),
        "steps": steps,
        "baseline": "Gaussian-blurred film",
        **result,
        "maps_beat_random": {"deletion": bool(better[0]), "insertion": bool(better[1])},
    }


def trust_checks(model, loaded, cam_result, labels: np.ndarray, n_images: int, steps: int, seed: int, device) -> dict:
    """Both checks on a class-balanced sample of the split (n_images in all), reusing the main pass's maps."""

    n = min(n_images // 2, int(np.bincount(labels, minlength=2).min()))
    pick = balanced_indices(labels, max(n, 1), seed + 2)
    images, targets = np.asarray(loaded.images[pick]), cam_result.targets[pick].astype(int)
    return {
        "randomisation": randomisation_test(
            model, images, targets, cam_result.method, seed, reference=cam_result.maps[pick]
        ),
        "faithfulness": deletion_insertion(model, images, cam_result.maps[pick], targets, steps, seed, device),
    }
