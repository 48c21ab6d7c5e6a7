"""Maps drawn for people: the jet colour map, overlays on the film, PNG encoding, contours (predict and the viewer)."""

from __future__ import annotations

import base64
import functools
import io

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def jet(heat: np.ndarray) -> np.ndarray:
    """The map scaled to its maximum in matplotlib's jet colour map, as uint8 RGBA: the 256-entry table indexed
    the way matplotlib indexes floats (floor(x * 256), 1.0 in the last entry), ~10x faster than calling it."""
    scaled = heat / heat.max() if heat.max() > 0 else np.zeros_like(heat)
    index = np.clip((np.asarray(scaled, dtype=np.float64) * 256).astype(np.int64), 0, 255)
    return _jet_table()[index]


@functools.cache
def _jet_table() -> np.ndarray:
    from matplotlib import colormaps  # deferred: matplotlib takes about a second to import; only figures need it

    return colormaps["jet"](np.arange(256), bytes=True)


def png_bytes(picture, compress_level: int = 6) -> bytes:
    """PNG bytes of a PIL image or uint8 array; compress_level 1 encodes several times faster (the viewer's choice)."""

    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def overlay_png(gray: np.ndarray, heat: np.ndarray, caption: str = "", compress_level: int = 6) -> bytes:
    """The film in grey with the map (scaled to its maximum) blended on top in the jet colour map; caption (the
    probability and the guard's verdict) on a dark strip above it."""

    colour = jet(heat)[..., :3].astype(np.float32)
    blended = 0.6 * gray[..., None].astype(np.float32) + 0.4 * colour
    picture = Image.fromarray(blended.clip(0, 255).astype(np.uint8))
    if caption:
        font = ImageFont.load_default(size=max(12, picture.width // 45))
        strip = int(font.size * 1.8)
        framed = Image.new("RGB", (picture.width, picture.height + strip), (20, 20, 20))
        framed.paste(picture, (0, strip))
        ImageDraw.Draw(framed).text((6, strip // 5), caption, fill=(255, 255, 255), font=font)
        picture = framed
    return png_bytes(picture, compress_level)


def png_base64(picture: np.ndarray) -> str:
    """Fast PNG (compress level 1: the viewer's images are encoded per request) as base64 text."""
    return base64.b64encode(png_bytes(picture, compress_level=1)).decode("ascii")


def heat_rgba(heat: np.ndarray) -> np.ndarray:
    """The map in the jet colour map, opaque where it is strong and transparent where it is zero."""
    rgba = jet(heat)
    scaled = heat / heat.max() if heat.max() > 0 else np.zeros_like(heat)
    rgba[..., 3] = (np.clip(scaled * 1.5, 0, 1) * 255).astype(np.uint8)
    return rgba


def contour_rgba(masks: dict[str, np.ndarray], colours: dict[str, tuple]) -> np.ndarray:
    """Outlines of each mask on a transparent layer."""

    side = next(iter(masks.values())).shape
    layer = np.zeros((*side, 4), dtype=np.uint8)
    for name, mask in masks.items():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(layer, contours, -1, (*colours[name], 255), max(1, side[0] // 160))
    return layer
