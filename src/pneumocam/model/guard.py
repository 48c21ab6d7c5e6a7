"""The domain-shift guard: does a film look like the films the model was trained on?

Two layers, cheapest first:
- input checks on the file itself: a colour picture, an aspect ratio no chest film has, a very small image, a
  near-blank image;
- the Mahalanobis distance of the model's pooled layer2 features (512-d) to the nearest class mean of the training
  films, with one shared covariance (Lee et al. 2018) estimated with Ledoit-Wolf shrinkage (scikit-learn): hundreds
  of dimensions from a few thousand films need the shrinkage to be invertible and stable. Layer2, not layer4 (the
  depth before format 2): on the shifts benchmarks/guard_depths.py makes (rotations, crops, strong gamma, inverted
  films, phantoms, noise), layer2 flagged 64% on average against layer4's 43%, and fewer held-out films (3.3%
  against 5.1%), at the same 95% validation pass rate. Anthony & Kamnitsas 2023 report the same kind of finding:
  which depth detects best depends on the shift, and the last layer is often not it.

The distance threshold is the validation split's 95th percentile, so 95% of in-distribution films pass. The
features are the ones Grad-CAM's forward pass computes anyway, so the guard costs one small matrix product.
A flagged film keeps its probability: the verdict is reported beside it, never instead of it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from threadpoolctl import ThreadpoolController

from pneumocam import CLASS_NAMES
from pneumocam.data.readers import UnreadableImage, image_source, looks_like_dicom
from pneumocam.model.network import checkpoint_part, store_checkpoint_part

GUARD_FORMAT_VERSION = 2  # 2: the depth it reads is stored (1: layer4, the only depth then)
GUARD_DEPTH = "layer2"  # which of `pooled_features`' parts a new guard reads
COVERAGE = 0.95
MAX_CHROMA = 12.0  # mean largest channel difference (grey levels) above which a picture is in colour
ASPECT_RANGE = (0.5, 2.0)  # width / height of chest films in practice
MIN_SIDE = 64  # px: smaller files are thumbnails, not films (phantoms and tests use 64 px)
MIN_STD = 6.0  # grey levels: below this the image is near-blank


@dataclass
class Verdict:
    in_distribution: bool
    ood_score: float  # Mahalanobis distance to the nearest training class mean (NaN without a guard)
    ood_reason: str  # "" when in distribution

    def to_dict(self) -> dict:
        return asdict(self)


@functools.cache
def blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once: making it (threadpool_limits does each time)
    inspects every loaded library, ~1 ms, a served film's guard check costs about that."""

    return ThreadpoolController()


@dataclass
class Guard:
    class_means: np.ndarray  # (2, D)
    precision: np.ndarray  # (D, D): inverse of the shrunk shared covariance
    threshold: float
    fitted_on: dict
    columns: tuple[int, int] | None = None  # which columns of a features row it reads (None: all of them)
    depth: str = ""  # the layer those columns hold

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each feature row (its `columns`) to the nearest class mean."""
        features = np.asarray(features, dtype=np.float64)
        if self.columns is not None:
            features = features[:, self.columns[0] : self.columns[1]]
        out = np.full(len(features), np.inf)
        # One BLAS thread: numpy's OpenBLAS threads keep spinning after a product and take the cores from the next
        # torch pass (measured: a served film's Grad-CAM batch took 148 ms after the guard instead of 76 ms).
        with blas_controller().limit(limits=1, user_api="blas"):
            for mean in self.class_means:
                centred = features - mean
                out = np.minimum(out, ((centred @ self.precision) * centred).sum(axis=1))  # one BLAS product
        return np.sqrt(np.maximum(out, 0.0))

    def assess(self, features: np.ndarray, input_reasons: list[str] | None = None) -> list[Verdict]:
        scores = self.distances(features)
        reasons = input_reasons or [""] * len(scores)
        verdicts = []
        for score, reason in zip(scores, reasons):
            if not reason and score > self.threshold:
                reason = f"features unlike the training films (distance {score:.1f} > {self.threshold:.1f})"
            verdicts.append(Verdict(not reason, float(score), reason))
        return verdicts

    def to_state(self) -> dict:
        """Plain tensors and numbers for model.pt (loadable with weights_only=True)."""

        return {
            "format_version": GUARD_FORMAT_VERSION,
            "class_means": torch.from_numpy(self.class_means.astype(np.float32)),
            "precision": torch.from_numpy(self.precision.astype(np.float32)),
            "threshold": float(self.threshold),
            "fitted_on": self.fitted_on,
            "columns": list(self.columns) if self.columns is not None else None,
            "depth": self.depth,
        }

    @classmethod
    def from_state(cls, state: dict | None) -> Guard | None:
        version = (state or {}).get("format_version")
        if version not in (1, GUARD_FORMAT_VERSION):
            return None
        means = state["class_means"].double().numpy()
        if version == 1:  # layer4's pooled features, the first columns of a features row
            columns, depth = (0, means.shape[1]), "layer4"
        else:
            columns = tuple(state["columns"]) if state.get("columns") is not None else None
            depth = str(state.get("depth", ""))
        return cls(
            means, state["precision"].double().numpy(), float(state["threshold"]), dict(state.get("fitted_on", {})),
            columns, depth,
        )  # fmt: skip


def image_reason(gray: np.ndarray) -> str:
    """Checks on the decoded grey film at the model's size."""
    if float(np.asarray(gray, dtype=np.float32).std()) < MIN_STD:
        return "near-blank image"
    return ""


def file_reason(path: str | os.PathLike) -> str:
    """Checks on the file as stored: colour, aspect ratio, size. DICOM files are monochrome by definition here."""

    try:
        source = image_source(path)  # a file, or a tar shard's member in memory
        if looks_like_dicom(source):
            import pydicom  # deferred: only DICOM files need it

            ds = pydicom.dcmread(source, stop_before_pixels=True)
            width, height, colour = int(ds.get("Columns", 0)), int(ds.get("Rows", 0)), 0.0
        else:
            with Image.open(source) as image:
                width, height = image.size
                colour = 0.0
                if image.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "F", "1", "LA"):
                    image.draft("RGB", (64, 64))
                    rgb = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int16)
                    colour = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, EOFError, MemoryError, UnreadableImage) as exc:
        # The reader decoded this film (or skips it with its own reason), yet its header could not be checked:
        # flagged, with what failed, rather than passed unchecked.
        return f"input checks could not read the file ({type(exc).__name__})"
    if colour > MAX_CHROMA:
        return "colour image"
    if height and not ASPECT_RANGE[0] <= width / height <= ASPECT_RANGE[1]:
        return f"aspect ratio {width}:{height} unlike a chest film"
    if min(width, height) < MIN_SIDE:
        return f"very small image ({width}x{height} px)"
    return ""


def input_reasons(paths: list[str], grays: np.ndarray) -> list[str]:
    """The first failing input check per image ("" when all pass)."""
    return [file_reason(p) or image_reason(np.asarray(g)) for p, g in zip(paths, grays)]


def verdicts(guard: Guard | None, features: np.ndarray | None, paths: list[str], grays) -> list[Verdict]:
    """Every image's verdict: input checks first, then (with a guard and features) the feature distance."""
    return judged(guard, features, input_reasons(paths, grays))


def judged(guard: Guard | None, features: np.ndarray | None, reasons: list[str]) -> list[Verdict]:
    """Every image's verdict from its input checks' reason ("" when they passed) and, with a guard and features, the
    feature distance (the viewer checks an upload's file itself, before it is decoded)."""
    if guard is None or features is None:
        return [Verdict(not reason, float("nan"), reason) for reason in reasons]
    return guard.assess(features, reasons)


def guard_summary(found: list[Verdict], labels: np.ndarray, guard: Guard | None) -> dict:
    """metrics.json / results.json: how many films were flagged, per class and per reason."""

    flagged = np.array([not v.in_distribution for v in found], dtype=bool)
    reasons: dict[str, int] = {}
    for v in found:
        if not v.in_distribution:
            key = "features unlike the training films" if v.ood_reason.startswith("features") else v.ood_reason
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "fitted": guard is not None,
        "threshold": guard.threshold if guard is not None else None,
        "fitted_on": guard.fitted_on if guard is not None else None,
        "n_flagged": int(flagged.sum()),
        "share_flagged": float(flagged.mean()) if len(flagged) else 0.0,
        "share_flagged_by_class": {
            CLASS_NAMES[c]: float(flagged[labels == c].mean()) if (labels == c).any() else None for c in (0, 1)
        },
        "reasons": reasons,
    }


def load_guard(checkpoint) -> Guard | None:

    return Guard.from_state(checkpoint_part(checkpoint, "guard"))


def save_guard(checkpoint, guard: Guard) -> None:

    store_checkpoint_part(checkpoint, "guard", guard.to_state())
