"""Predict single files: probability, prediction and a Grad-CAM overlay at the file's own resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pneumocam import CLASS_NAMES
from pneumocam.core.messages import warn
from pneumocam.core.outputs import atomic_write_bytes, mark_complete, new_run_folder, write_csv, write_json
from pneumocam.core.precision import resolve_precision
from pneumocam.core.schema import FIXED_THRESHOLD, decide
from pneumocam.data import LoadedImages, Sample, patient_id_from_name
from pneumocam.data.readers import UnreadableImage, read_grayscale, read_resized
from pneumocam.evaluation.leakage import check_leakage, enforce
from pneumocam.explain.cam import make_cam, upsample
from pneumocam.explain.overlays import overlay_png
from pneumocam.model.network import resolve_device
from pneumocam.model.session import InferenceSession


@dataclass
class PredictOutcome:
    folder: Path
    header: list[str]
    rows: list[tuple]
    threshold: float
    threshold_source: str
    leakage: dict
    n_read: int  # files that could be read (the rest are rows with their reason)


def predict_files(
    checkpoint,
    images: list[Path],
    out,
    method: str = "gradcam",
    device: str = "auto",
    strict: bool = False,
    precision: str = "auto",
) -> PredictOutcome:
    """The model's input is read exactly as evaluate reads it (same decoder, same resize), so the probabilities
    agree with `evaluate` on the same files; the overlay is drawn on the film at its own resolution.
    The decision uses the checkpoint's threshold (core.schema.decision_key's rule); 0.5 is shown beside it."""
    target = resolve_device(device)
    session = InferenceSession.open(checkpoint, target, resolve_precision(precision, target))
    meta, reads, guard = session.meta, session.reads, session.guard
    size, threshold, source = reads.image_size, session.threshold, session.threshold_source
    readable, inputs, originals, rows = [], [], [], []
    for path in images:
        try:
            inputs.append(read_resized(path, size))
            originals.append(read_grayscale(path))
            readable.append(path)
        except UnreadableImage as exc:
            rows.append((str(path), "", "skipped", "", str(exc), "", "", ""))
    samples = [Sample(str(p), -1, "predict", patient_id_from_name(Path(p).name)) for p in readable]
    leakage = check_leakage(meta, samples)
    enforce(leakage, strict, warn)
    folder = new_run_folder(out, prefix="predict")
    if readable:
        # --focus models read the focused crop (lungs estimated: new films come without masks); maps go back to the film
        focused = reads.read(LoadedImages(samples, np.stack(inputs), [], False))
        with session.running():
            result = make_cam(session.model, method, device=target)(
                focused.images, target="pred", description="Explaining"
            )
        maps = reads.on_film(result.maps, focused.boxes, grid=size)
        found = session.verdicts(result.features, [str(p) for p in readable], np.stack(inputs))
        for i, (path, gray) in enumerate(zip(readable, originals)):
            heat = map_on_original(maps[i : i + 1], gray.shape)
            name = f"{i:03d}_{Path(path).stem}_{method}.png"
            prob, verdict = float(result.probs[i]), found[i]
            decision = CLASS_NAMES[int(session.decide(prob))]
            shift = "in distribution" if verdict.in_distribution else f"OUT OF DISTRIBUTION: {verdict.ood_reason}"
            caption = f"p(PNEUMONIA) {prob:.3f} -> {decision} | {shift}"
            atomic_write_bytes(folder / name, overlay_png(gray, heat, caption))
            rows.append(
                (
                    str(path),
                    f"{prob:.6f}",
                    decision,
                    CLASS_NAMES[int(decide(prob, FIXED_THRESHOLD))],
                    name,
                    int(verdict.in_distribution),
                    f"{verdict.ood_score:.3f}",
                    verdict.ood_reason,
                )
            )
    header = ["path", "prob_pneumonia", f"pred_at_{threshold:.4f}", "pred_at_0.5", "overlay_or_reason"]
    header += ["in_distribution", "ood_score", "ood_reason"]
    write_csv(folder / "predictions.csv", header, rows)
    write_json(
        folder / "predict.json",
        {
            "checkpoint": str(checkpoint),
            "weights": meta.get("weights"),
            "focus": meta.get("focus", "none"),
            "guard": guard.fitted_on | {"threshold": guard.threshold} if guard is not None else None,
            "threshold": threshold,
            "threshold_source": source,
            "leakage": leakage.to_dict(),
        },
    )
    leakage.write_csv(folder / "leakage.csv")
    mark_complete(folder)
    return PredictOutcome(folder, header, rows, threshold, source, leakage.to_dict(), len(readable))


def map_on_original(map_row: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One film's map at the film's own resolution: the model saw a squashed square, so a non-square film's map is
    stretched back."""
    heat = upsample(map_row, max(shape))[0]
    if shape[0] != shape[1]:
        heat = np.asarray(Image.fromarray(heat).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return heat
