"""Synthetic frontal chest films with ground truth: the embedded demo data and test fixture.

Each phantom has a body silhouette on a blank border, two dark lung fields, mediastinum and
heart, diaphragm domes, ribs and soft-tissue noise, with sizes and positions varied per
image. PNEUMONIA phantoms carry one to three bright, irregular consolidations inside a lung.
Every image comes with its lung mask and lesion mask. An optional shortcut marker (a bright
square whose presence follows the label) lets a user watch a model cheat and its explanation
reveal it: in the top-left corner on the blank border (`corner`, which --focus body blanks),
or on the body below the diaphragm, outside the lungs (`inside`, which it cannot).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from pneumocam import CLASS_NAMES
from pneumocam.core.defaults import IMAGE_SIZE, SEED


@dataclass
class Phantom:
    image: np.ndarray  # uint8 (S, S)
    lungs: np.ndarray  # bool
    lesion: np.ndarray  # bool; empty for NORMAL
    marker: np.ndarray  # bool; the shortcut marker, empty when absent
    label: int


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(coords, coords, indexing="xy")  # x, y in (0, 1), y grows downwards


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random cells upsampled bilinearly."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return (
        np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)).clip(-2.5, 2.5) / 2
    )


MARKER_PLACES = ("corner", "inside")


def make_phantom(
    rng: np.random.Generator, label: int, size: int = IMAGE_SIZE, marker: bool = False, place: str = "corner"
) -> Phantom:
    x, y = _grid(size)
    cx = 0.5 + rng.normal(0, 0.015)
    # Body: a superellipse that widens towards the bottom, on a near-black border.
    half_width = rng.uniform(0.36, 0.43) * (0.85 + 0.25 * y)
    bx, by = ((x - cx) / half_width) ** 2, ((y - 0.58) / rng.uniform(0.56, 0.62)) ** 2
    body = bx * bx + by * by < 1.0
    border = rng.uniform(0.01, 0.06)
    image = np.where(body, rng.uniform(0.50, 0.60) + 0.10 * y, border).astype(np.float32)  # thicker tissue lower down

    # Lungs: two ellipses cut from below by the diaphragm dome (highest under the lung's centre);
    # the patient's left lung (image right) is a little smaller: the heart.
    lungs = np.zeros((size, size), dtype=bool)
    domes = np.zeros((size, size), dtype=bool)
    for side in (-1, 1):
        lx = cx + side * rng.uniform(0.15, 0.19)
        ly = rng.uniform(0.40, 0.46)
        ax = rng.uniform(0.10, 0.13) * (0.95 if side > 0 else 1.0)
        ay = rng.uniform(0.23, 0.28)
        dome = ly + 0.62 * ay + 0.5 * ay * ((x - lx) / ax) ** 2
        lungs |= (((x - lx) / ax) ** 2 + ((y - ly) / ay) ** 2 < 1.0) & (y < dome)
        domes |= (y >= dome) & (y < dome + 0.03) & (np.abs(x - lx) < ax)
    image -= lungs * np.float32(rng.uniform(0.30, 0.38))

    # Mediastinum and heart: brighter soft tissue between and over the lower lungs.
    mediastinum = (np.abs(x - cx) < 0.045) & (y > 0.12) & body
    heart = ((x - (cx + 0.05)) / rng.uniform(0.11, 0.14)) ** 2 + ((y - rng.uniform(0.58, 0.63)) / 0.11) ** 2 < 1.0
    image += mediastinum * np.float32(0.12) + (heart & body) * np.float32(0.18)
    image += (domes & body & ~lungs) * np.float32(0.10)  # the bright diaphragm edge

    # Ribs: curved bright bands every ~7% of the height, more visible over the dark lungs.
    spacing = rng.uniform(0.066, 0.074)
    rib_phase = (y - 0.9 * (np.abs(x - cx) - 0.12) ** 2 - rng.uniform(0.0, spacing)) / spacing
    ribs = (
        (np.abs(rib_phase - np.round(rib_phase)) * spacing < 0.011)
        & (np.abs(x - cx) > 0.05)
        & (y > 0.15)
        & (y < 0.72)
        & body
    )
    image += ribs * np.where(lungs, 0.09, 0.04).astype(np.float32)

    lesion = np.zeros((size, size), dtype=bool)
    if label == 1:
        lung_pixels = np.flatnonzero(lungs)
        for _ in range(int(rng.integers(1, 4))):
            centre = lung_pixels[rng.integers(len(lung_pixels))]
            py, px = divmod(int(centre), size)
            radius = rng.uniform(0.05, 0.09)
            d2 = ((x - (px + 0.5) / size) ** 2 + (y - (py + 0.5) / size) ** 2) / radius**2
            blob = np.exp(-d2) * (1.0 + 0.6 * _smooth_noise(rng, size, 12))  # irregular border
            opacity = np.clip((blob - 0.35) / 0.4, 0.0, 1.0) * lungs
            image += rng.uniform(0.30, 0.40) * opacity
            lesion |= opacity > 0.25

    # Soft-tissue texture and film noise.
    image += 0.03 * _smooth_noise(rng, size, 10) * body
    image += np.float32(0.015) * rng.standard_normal((size, size), dtype=np.float32)

    # A burnt-in laterality marker on the blank border of every film (not related to the label).
    mark = np.zeros((size, size), dtype=bool)
    mx, my = rng.uniform(0.89, 0.93), rng.uniform(0.04, 0.09)
    mark |= (np.abs(x - mx) < 0.015) & (np.abs(y - my) < 0.03) & ~body
    image[mark] = 0.9

    shortcut = np.zeros((size, size), dtype=bool)
    if marker and place == "corner":
        shortcut = (x > 0.03) & (x < 0.10) & (y > 0.03) & (y < 0.10)
    elif marker:  # the upper abdomen: the lungs end above y = 0.74, the body below y = 1.1
        shortcut = (np.abs(x - cx) < 0.06) & (y > 0.79) & (y < 0.88) & body & ~lungs
    image[shortcut] = 0.95
    gray = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return Phantom(gray, lungs, lesion, shortcut, label)


@dataclass
class PhantomDataset:
    images: Path  # Kermany layout: images/{split}/{CLASS}/phantom-<id>-1.png
    lung_masks: Path  # same layout, 0 background / 255 lung
    lesion_masks: Path
    marker_masks: Path | None


def write_phantom_dataset(
    out: str | os.PathLike,
    counts: dict[str, int],
    size: int = IMAGE_SIZE,
    seed: int = SEED,
    shortcut: float = 0.0,
    marker: str = "corner",
) -> PhantomDataset:
    """Write counts[split] phantoms per class into OUT/images, with masks in OUT/*-masks.

    shortcut: 0 for none; p in (0.5, 1] puts the marker on PNEUMONIA films with probability p and
    on NORMAL films with probability 1 - p. marker: where it goes, one of MARKER_PLACES.
    """
    if marker not in MARKER_PLACES:
        raise ValueError(f"marker must be one of {', '.join(MARKER_PLACES)}, got '{marker}'")
    out = Path(out)
    rng = np.random.default_rng(seed)
    folders = {"images": out / "images", "lungs": out / "lung-masks", "lesion": out / "lesion-masks"}
    if shortcut:
        folders["marker"] = out / "marker-masks"
    patient = 0
    for split, n in counts.items():
        for label, name in enumerate(CLASS_NAMES):
            for folder in folders.values():
                (folder / split / name).mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                patient += 1
                marked = bool(shortcut) and rng.random() < (shortcut if label == 1 else 1.0 - shortcut)
                phantom = make_phantom(rng, label, size, marked, marker)
                stem = f"phantom-{patient:05d}-1"
                Image.fromarray(phantom.image).save(folders["images"] / split / name / f"{stem}.png", compress_level=1)
                for key, mask in (("lungs", phantom.lungs), ("lesion", phantom.lesion), ("marker", phantom.marker)):
                    if key in folders:
                        Image.fromarray(mask.astype(np.uint8) * 255).save(
                            folders[key] / split / name / f"{stem}.png", compress_level=1
                        )
    return PhantomDataset(folders["images"], folders["lungs"], folders["lesion"], folders.get("marker"))
