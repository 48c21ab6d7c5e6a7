"""Read any chest X-ray file into one 8-bit grayscale array.

Supported: JPEG, PNG, TIFF, BMP of any mode (L, RGB, RGBA, P, I;16, CMYK, EXIF-rotated)
and DICOM (Modality and VOI LUTs applied, MONOCHROME1 inverted). Pillow's
decompression-bomb guard stays on. Every failure is an `UnreadableImage` whose message is
the reason recorded in the skip list.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
MIN_SIDE = 16  # smaller images carry no usable anatomy after resizing


class UnreadableImage(Exception):
    """The file cannot be used as an image; str(exc) is the reason for the skip list."""


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _looks_like_dicom(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Linearly map the array's own range onto 0..255 (16-bit and float images)."""
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.any():
        raise UnreadableImage("image holds no finite pixel values")
    low, high = float(array[finite].min()), float(array[finite].max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (np.where(finite, array, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _read_dicom(path: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableImage(f"corrupt DICOM: {exc}") from exc
    if "PixelData" not in ds:
        raise UnreadableImage("DICOM file has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for bad or compressed data
        raise UnreadableImage(f"DICOM pixel data cannot be decoded: {exc}") from exc
    if pixels.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        pixels = pixels[0]  # multi-frame: the first frame is the radiograph
    elif pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
    values = apply_modality_lut(pixels, ds)
    values = apply_voi_lut(values, ds)
    gray = _to_uint8(values)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255 - gray  # MONOCHROME1 stores bone dark: invert so it reads like every other film
    return gray


def _pil_to_gray(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _to_uint8(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels read as black, the colour of the film's blank border.
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8)


def read_grayscale(path: str | os.PathLike, draft_size: int | None = None) -> np.ndarray:
    """Read one file into an (H, W) uint8 array, or raise UnreadableImage with the reason.

    draft_size lets large JPEGs decode at a reduced scale (still >= draft_size per side),
    which is much faster when the image will be resized down anyway.
    """
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImage("empty file (0 bytes)")
        if _looks_like_dicom(path):
            gray = _read_dicom(path)
        else:
            with Image.open(path) as image:
                if draft_size and image.format == "JPEG":
                    image.draft("L", (draft_size, draft_size))
                image.load()
                gray = _pil_to_gray(image)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"image too large (decompression-bomb guard): {exc}") from exc
    except PermissionError as exc:
        raise UnreadableImage("permission denied") from exc
    except FileNotFoundError as exc:
        raise UnreadableImage("file not found (a broken link?)") from exc
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise UnreadableImage("symbolic link loop") from exc
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    if gray.ndim != 2:
        raise UnreadableImage(f"unexpected pixel layout {gray.shape}")
    if min(gray.shape) < MIN_SIDE:
        raise UnreadableImage(
            f"image too small ({gray.shape[1]}x{gray.shape[0]} px; need at least {MIN_SIDE} px per side)"
        )
    return gray


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Squash to size x size, as Kermany's 224 px set and the original Keras pipeline do."""
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))


def read_resized(path: str | os.PathLike, size: int) -> np.ndarray:
    return resize_square(read_grayscale(path, draft_size=size), size)
