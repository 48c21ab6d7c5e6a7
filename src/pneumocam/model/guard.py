"""The domain-shift guard: does a film look like the films the model was trained on?

Two layers, cheapest first:
- input checks on the file itself: a colour picture, an aspect ratio no chest film has, a very small image, a
  near-blank image;
- distances to the training films of two descriptors of the film the forward pass computes anyway
  (model.network.early_features), combined: layer1's channel means and standard deviations (the film's texture and
  contrast) and the film as the model reads it averaged to 8 x 8 (its layout: how large the body is and where it
  lies). Each part scores a film by its distance to its k-th nearest training film (Sun et al. 2022, "Out-of-
  distribution detection with deep nearest neighbors", ICML: no assumption on the features' distribution), each
  part's log distance is standardised by its mean and spread on the validation films, and the parts are summed.
  Why these: on adult NIH films, a second population a Kermany-only model never saw, layer2's pooled features (the
  guard of format 2) flagged about half, the Mahalanobis distance (Lee et al. 2018) of these two parts (format 3)
  nine in ten, and their nearest-neighbour distances 98%, with about 3% of held-out Kermany films flagged by each
  (benchmarks/results/guard-parts-*.json, populations-scratch.json; docs/measured.md). A guard fitted before
  (model.pt formats 1-3: Mahalanobis parts) still loads and judges as it did.

The threshold is the validation split's 95th percentile of the score, so 95% of in-distribution films pass.
A flagged film keeps its probability: the verdict is reported beside it, never instead of it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import ThreadpoolController

from pneumocam import CLASS_NAMES
from pneumocam.data.readers import UnreadableImage, image_source, looks_like_dicom
from pneumocam.model.network import checkpoint_part, store_checkpoint_part

GUARD_FORMAT_VERSION = 4  # 4: parts by nearest neighbours; 3: Mahalanobis parts summed; 2: one part; 1: layer4
# The parts a new guard reads (model.network.pooled_columns' names), each one's scaling before distances are taken
# (SCALINGS) and its k (the distance to the k-th nearest training film).
GUARD_PARTS: dict[str, tuple[str, int]] = {"layer1 moments": ("standardised", 5), "thumbnail": ("standardised", 5)}
SCALINGS = ("unit length", "standardised")
MAX_NEIGHBOURS = 5000  # training films a neighbour part keeps (a random subset beyond): model.pt's size is bounded
COVERAGE = 0.95
MAX_CHROMA = 12.0  # mean largest channel difference (grey levels) above which a picture is in colour
ASPECT_RANGE = (0.5, 2.0)  # width / height of chest films in practice
MIN_SIDE = 64  # px: smaller files are thumbnails, not films (phantoms and tests use 64 px)
MIN_STD = 6.0  # grey levels: below this the image is near-blank


@dataclass
class Verdict:
    in_distribution: bool
    ood_score: float  # the guard's score: one part's distance, or the combined parts' sum (NaN without a guard)
    ood_reason: str  # "" when in distribution

    def to_dict(self) -> dict:
        return asdict(self)


@functools.cache
def blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once: making it (threadpool_limits does each time)
    inspects every loaded library, ~1 ms, a served film's guard check costs about that."""

    return ThreadpoolController()


class Judge:
    """What every guard does with its score: a verdict per film (the input checks' reason first)."""

    threshold: float

    def distances(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def assess(self, features: np.ndarray, input_reasons: list[str] | None = None) -> list[Verdict]:
        scores = self.distances(features)
        reasons = input_reasons or [""] * len(scores)
        verdicts = []
        for score, reason in zip(scores, reasons):
            if not reason and score > self.threshold:
                reason = f"features unlike the training films (score {score:.1f} > {self.threshold:.1f})"
            verdicts.append(Verdict(not reason, float(score), reason))
        return verdicts


@dataclass
class Guard(Judge):
    """One part: the Mahalanobis distance of some columns of a features row (optionally projected on principal
    components) to the nearest training class mean."""

    class_means: np.ndarray  # (2, D)
    precision: np.ndarray  # (D, D): inverse of the shrunk shared covariance
    threshold: float
    fitted_on: dict
    columns: tuple[int, int] | None = None  # which columns of a features row it reads (None: all of them)
    depth: str = ""  # the layer those columns hold
    components: np.ndarray | None = None  # (D, columns): principal axes the columns are projected on (None: none)
    offset: np.ndarray | None = None  # (columns,): the mean subtracted before the projection

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each feature row (its `columns`) to the nearest class mean."""
        features = np.asarray(features, dtype=np.float64)
        if self.columns is not None:
            features = features[:, self.columns[0] : self.columns[1]]
        if self.components is not None:
            features = (features - self.offset) @ self.components.T
        out = np.full(len(features), np.inf)
        # One BLAS thread: numpy's OpenBLAS threads keep spinning after a product and take the cores from the next
        # torch pass (measured: a served film's Grad-CAM batch took 148 ms after the guard instead of 76 ms).
        with blas_controller().limit(limits=1, user_api="blas"):
            for mean in self.class_means:
                centred = features - mean
                out = np.minimum(out, ((centred @ self.precision) * centred).sum(axis=1))  # one BLAS product
        return np.sqrt(np.maximum(out, 0.0))

    def to_state(self) -> dict:
        """Plain tensors and numbers for model.pt (loadable with weights_only=True)."""

        def tensor(array):
            return None if array is None else torch.from_numpy(np.asarray(array, dtype=np.float32))

        return {
            "format_version": 2,
            "class_means": tensor(self.class_means),
            "precision": tensor(self.precision),
            "threshold": float(self.threshold),
            "fitted_on": self.fitted_on,
            "columns": list(self.columns) if self.columns is not None else None,
            "depth": self.depth,
            "components": tensor(self.components),
            "offset": tensor(self.offset),
        }

    @classmethod
    def from_state(cls, state: dict | None) -> Judge | None:
        version = (state or {}).get("format_version")
        if version in (3, 4):
            return CombinedGuard.from_state(state)
        if version == NeighbourGuard.FORMAT:
            return NeighbourGuard.from_state(state)
        if version not in (1, 2):
            return None
        means = state["class_means"].double().numpy()
        if version == 1:  # layer4's pooled features, the first columns of a features row
            columns, depth = (0, means.shape[1]), "layer4"
        else:
            columns = tuple(state["columns"]) if state.get("columns") is not None else None
            depth = str(state.get("depth", ""))

        def array(key):
            return None if state.get(key) is None else state[key].double().numpy()

        return cls(
            means, state["precision"].double().numpy(), float(state["threshold"]), dict(state.get("fitted_on", {})),
            columns, depth, array("components"), array("offset"),
        )  # fmt: skip


@dataclass
class NeighbourGuard(Judge):
    """One part: the distance of some columns of a features row, scaled, to the k-th nearest training film (Sun et
    al. 2022): score(x) = || s(x) - s(t_(k)) ||, t_(k) the k-th closest training row to x after the scaling s
    ("unit length": x / ||x||, as the paper; "standardised": (x - mean) / std per column, over the training films).
    Exact search (scikit-learn's brute force) over at most MAX_NEIGHBOURS training rows."""

    FORMAT = "neighbours-1"  # a part's state; the combined guard's is GUARD_FORMAT_VERSION

    bank: np.ndarray  # (N, D): the training films' columns, scaled
    k: int
    scaling: str
    threshold: float
    fitted_on: dict
    columns: tuple[int, int] | None = None
    depth: str = ""
    centre: np.ndarray | None = None  # "standardised": the training films' column means and standard deviations
    scale: np.ndarray | None = None

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling {self.scaling!r}: expected one of {SCALINGS}")
        if not 1 <= self.k <= len(self.bank):
            raise ValueError(f"k = {self.k}: expected 1 to {len(self.bank)} (the training films kept)")

    def scaled(self, features: np.ndarray) -> np.ndarray:
        """Features rows' columns, scaled."""
        features = np.asarray(features, dtype=np.float64)
        if self.columns is not None:
            features = features[:, self.columns[0] : self.columns[1]]
        return self.rescaled(features)

    def rescaled(self, features: np.ndarray) -> np.ndarray:
        """The part's columns alone, scaled."""
        if self.scaling == "unit length":
            return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        return (features - self.centre) / self.scale

    @functools.cached_property
    def search(self) -> NearestNeighbors:
        return NearestNeighbors(n_neighbors=self.k, algorithm="brute").fit(np.asarray(self.bank, dtype=np.float64))

    def distances(self, features: np.ndarray) -> np.ndarray:
        with blas_controller().limit(limits=1, user_api="blas"):  # as Guard.distances: the cores go back to torch
            return self.search.kneighbors(self.scaled(features), n_neighbors=self.k)[0][:, -1]

    def to_state(self) -> dict:
        def tensor(array):
            return None if array is None else torch.from_numpy(np.asarray(array, dtype=np.float32))

        return {
            "format_version": self.FORMAT,
            "bank": tensor(self.bank),
            "k": int(self.k),
            "scaling": self.scaling,
            "threshold": float(self.threshold),
            "fitted_on": self.fitted_on,
            "columns": list(self.columns) if self.columns is not None else None,
            "depth": self.depth,
            "centre": tensor(self.centre),
            "scale": tensor(self.scale),
        }

    @classmethod
    def from_state(cls, state: dict) -> NeighbourGuard:
        def array(key):
            return None if state.get(key) is None else state[key].double().numpy()

        columns = tuple(state["columns"]) if state.get("columns") is not None else None
        return cls(
            array("bank"), int(state["k"]), str(state["scaling"]), float(state["threshold"]),
            dict(state.get("fitted_on", {})), columns, str(state.get("depth", "")), array("centre"), array("scale"),
        )  # fmt: skip


@dataclass
class CombinedGuard(Judge):
    """Several parts (each a Guard), each one's log distance standardised by its validation mean and spread, summed:
    a film far from the training films in any part scores high, and no part's scale outweighs another's."""

    parts: list[Guard | NeighbourGuard]
    centres: list[float]  # mean log distance of each part on the validation films
    spreads: list[float]  # its standard deviation there
    threshold: float
    fitted_on: dict

    @property
    def depth(self) -> str:
        return " + ".join(part.depth for part in self.parts)

    def part_scores(self, features: np.ndarray) -> np.ndarray:
        """(parts, films): each part's standardised log distance."""
        return np.stack(
            [
                (np.log(np.maximum(part.distances(features), 1e-12)) - centre) / spread
                for part, centre, spread in zip(self.parts, self.centres, self.spreads)
            ]
        )

    def distances(self, features: np.ndarray) -> np.ndarray:
        return self.part_scores(features).sum(axis=0)

    def to_state(self) -> dict:
        return {
            "format_version": GUARD_FORMAT_VERSION if any(isinstance(p, NeighbourGuard) for p in self.parts) else 3,
            "parts": [part.to_state() for part in self.parts],
            "centres": [float(c) for c in self.centres],
            "spreads": [float(s) for s in self.spreads],
            "threshold": float(self.threshold),
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_state(cls, state: dict) -> CombinedGuard:
        parts = [Guard.from_state(part) for part in state["parts"]]
        return cls(
            parts, list(state["centres"]), list(state["spreads"]), float(state["threshold"]), dict(state["fitted_on"])
        )


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


def verdicts(guard: Judge | None, features: np.ndarray | None, paths: list[str], grays) -> list[Verdict]:
    """Every image's verdict: input checks first, then (with a guard and features) the feature distance."""
    return judged(guard, features, input_reasons(paths, grays))


def judged(guard: Judge | None, features: np.ndarray | None, reasons: list[str]) -> list[Verdict]:
    """Every image's verdict from its input checks' reason ("" when they passed) and, with a guard and features, the
    feature distance (the viewer checks an upload's file itself, before it is decoded)."""
    if guard is None or features is None:
        return [Verdict(not reason, float("nan"), reason) for reason in reasons]
    return guard.assess(features, reasons)


def guard_summary(found: list[Verdict], labels: np.ndarray, guard: Judge | None) -> dict:
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


def load_guard(checkpoint) -> Judge | None:

    return Guard.from_state(checkpoint_part(checkpoint, "guard"))


def save_guard(checkpoint, guard: Judge) -> None:

    store_checkpoint_part(checkpoint, "guard", guard.to_state())
