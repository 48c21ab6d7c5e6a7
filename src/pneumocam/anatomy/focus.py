"""--focus: take the blank border and its burnt-in letters away from the model, and map its maps back to the film.

- `body`: pixels outside the body set to a neutral grey (the value ImageNet normalisation maps to about zero),
  then the film cropped to the body's bounding box plus a margin and resized back to the model's input size;
- `lungs`: the same, cropped to the lungs' bounding box plus a margin (reference masks where given, else the
  learned lung model, else the classical estimate; each image records which);
- `lungs-only`: every pixel outside the lungs grey, not only those outside the body, then cropped like `lungs`.
  The model cannot read the mediastinum, the diaphragm or a marker on the body, so its decision can rest only
  on the lung fields: that is by construction, and the mask's outline is then part of what it reads.

The model sees the focused images; every map is put back on the original film's grid (`film_maps`), so region
shares, pointing game and overlays of focused and unfocused models are measured on the same regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pneumocam.anatomy.lungs import LungModel, body_mask, classical_lungs
from pneumocam.core.errors import SettingError
from pneumocam.core.progress import track
from pneumocam.data import IMAGENET_MEAN, LoadedImages
from pneumocam.data.masks import load_masks

FOCUS_MODES = ("none", "body", "lungs", "lungs-only")
LUNG_MODES = ("lungs", "lungs-only")  # the modes that need each film's lungs
NEUTRAL_GREY = int(round(255 * float(np.mean(IMAGENET_MEAN))))
MARGIN = 0.05  # of the image side, on each side of the box


@dataclass
class Focused:
    """What the model reads (images) and where each came from on the film: boxes (N, 4) top, bottom, left, right
    (end-exclusive, film pixels); lung_sources per image for the LUNG_MODES."""

    images: np.ndarray
    boxes: np.ndarray
    lung_sources: list[str]

    def inputs(self, loaded: LoadedImages) -> LoadedImages:
        return LoadedImages(loaded.samples, self.images, loaded.skipped, loaded.from_cache)


def check_focus(mode: str) -> str:
    if mode not in FOCUS_MODES:
        raise SettingError("focus", f"must be one of {', '.join(FOCUS_MODES)}, got '{mode}'")
    return mode


def bounding_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), end-exclusive, of the mask's pixels widened by margin and clipped to the image;
    the whole image for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, mask.shape[0], 0, mask.shape[1]
    return (
        max(0, rows[0] - margin),
        min(mask.shape[0], rows[-1] + 1 + margin),
        max(0, cols[0] - margin),
        min(mask.shape[1], cols[-1] + 1 + margin),
    )


def focus_image(
    gray: np.ndarray, mode: str, lungs: np.ndarray | None = None, body: np.ndarray | None = None
) -> tuple[np.ndarray, tuple]:
    """(the focused film at the same size, its box on the film). lungs: the film's lung mask for the LUNG_MODES;
    body: its body mask where the caller has it already (the viewer), else computed here."""

    side = gray.shape[0]
    if mode == "none":
        return gray, (0, side, 0, gray.shape[1])
    body = body_mask(gray) if body is None else body
    if mode in LUNG_MODES:
        region = lungs if lungs is not None else classical_lungs(gray, body=body)
        body = region if mode == "lungs-only" else body | region
    else:
        region = body
    box = bounding_box(region, int(round(MARGIN * side)))
    top, bottom, left, right = box
    crop = np.where(body, gray, NEUTRAL_GREY).astype(np.uint8)[top:bottom, left:right]
    return cv2.resize(crop, (gray.shape[1], side), interpolation=cv2.INTER_LINEAR), box


def focus_images(
    loaded: LoadedImages, mode: str, lung_root: str | None = None, lung_model: str | None = None
) -> Focused:
    """Every image of a split focused the same way (lungs from masks under lung_root where present, else lung_model,
    else the classical estimate)."""

    check_focus(mode)
    n, side = len(loaded.images), loaded.images.shape[-1]
    boxes = np.tile(np.array([0, side, 0, side]), (n, 1))
    if mode == "none":
        return Focused(loaded.images, boxes, [])
    estimator = None
    if mode in LUNG_MODES and lung_model:
        estimator = LungModel.load(lung_model)
    images = np.empty((n, side, side), dtype=np.uint8)
    sources: list[str] = []
    for i in track(range(n), f"Focusing on the {mode}", total=n):
        gray = np.asarray(loaded.images[i])
        lungs = None
        if mode in LUNG_MODES:
            found = False
            if lung_root:
                masks, present = load_masks(lung_root, loaded.samples[i : i + 1], side)
                found = bool(present[0] and masks[0].any())
            if found:
                lungs, source = masks[0], "mask"
            elif estimator is not None:
                lungs, source = estimator.predict(gray), "estimated (learned model)"
            else:
                source = "estimated (classical)"
            sources.append(source)
        images[i], boxes[i] = focus_image(gray, mode, lungs)
    return Focused(images, boxes, sources)


def crop_masks(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Film-grid masks cut to each focused image's box and resized like the film (nearest), so they lie where the
    focused image shows the same anatomy."""
    out = np.zeros_like(masks)
    for i, (top, bottom, left, right) in enumerate(np.asarray(boxes)):
        crop = np.ascontiguousarray(masks[i, top:bottom, left:right], dtype=np.uint8)
        out[i] = cv2.resize(crop, masks.shape[:0:-1], interpolation=cv2.INTER_NEAREST).astype(masks.dtype)
    return out


def film_maps(maps: np.ndarray, boxes: np.ndarray, side: int, grid: int | None = None) -> np.ndarray:
    """Maps computed on focused images, put back where their crop lies on the film: (N, grid, grid), zero outside
    the box. grid defaults to side / 4 (56 for 224 px), fine enough for the 7x7 maps of layer4 at 224 px."""
    grid = grid or max(8, side // 4)
    out = np.zeros((len(maps), grid, grid), dtype=np.float32)
    scale = grid / side
    for i, (top, bottom, left, right) in enumerate(np.asarray(boxes)):
        t, b = int(round(top * scale)), max(int(round(top * scale)) + 1, int(round(bottom * scale)))
        l, r = int(round(left * scale)), max(int(round(left * scale)) + 1, int(round(right * scale)))
        out[i, t:b, l:r] = cv2.resize(
            np.asarray(maps[i], dtype=np.float32), (r - l, b - t), interpolation=cv2.INTER_LINEAR
        )
    return out
