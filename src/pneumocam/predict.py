"""Predict single files: probability, prediction and a Grad-CAM overlay at the file's own resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CLASS_NAMES
from .cam import make_cam, upsample
from .data.readers import UnreadableImage, read_grayscale, resize_square
from .model import load_checkpoint, resolve_device
from .outputs import atomic_write_bytes, mark_complete, new_run_folder, write_csv


def overlay_png(gray: np.ndarray, heat: np.ndarray) -> bytes:
    """The film in grey with the map (scaled to its maximum) blended on top in the jet colour map."""
    import io

    from matplotlib import colormaps
    from PIL import Image

    scaled = heat / heat.max() if heat.max() > 0 else heat
    colour = colormaps["jet"](scaled)[..., :3]
    base = np.repeat(gray[..., None] / 255.0, 3, axis=2)
    blended = (0.6 * base + 0.4 * colour) * 255
    buffer = io.BytesIO()
    Image.fromarray(blended.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def predict_files(checkpoint, images: list[Path], out, method: str = "gradcam", device: str = "auto"):
    target = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, target)
    size = int(meta.get("image_size", 224))
    threshold = 0.5
    folder = new_run_folder(out, prefix="predict")
    readable, originals, rows = [], [], []
    for path in images:
        try:
            originals.append(read_grayscale(path))
            readable.append(path)
        except UnreadableImage as exc:
            rows.append((str(path), "", "skipped", str(exc)))
    if readable:
        batch = np.stack([resize_square(g, size) for g in originals])
        result = make_cam(model, method, device=target)(batch, target="pred", description="Explaining")
        for i, (path, gray) in enumerate(zip(readable, originals)):
            heat = upsample(result.maps[i:i + 1], max(gray.shape))[0]
            if gray.shape[0] != gray.shape[1]:  # the model saw a squashed square: stretch the map back
                from PIL import Image

                heat = np.asarray(Image.fromarray(heat).resize((gray.shape[1], gray.shape[0]), Image.Resampling.BILINEAR))
            name = f"{i:03d}_{Path(path).stem}_{method}.png"
            atomic_write_bytes(folder / name, overlay_png(gray, heat))
            prob = float(result.probs[i])
            rows.append((str(path), f"{prob:.4f}", CLASS_NAMES[int(prob >= threshold)], name))
    write_csv(folder / "predictions.csv", ["path", "prob_pneumonia", "pred", "overlay_or_reason"], rows)
    mark_complete(folder)
    return folder, rows
