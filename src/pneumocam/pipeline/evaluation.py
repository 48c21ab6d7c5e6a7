"""`pneumocam evaluate` as stages: open the checkpoint (or the ensemble's members), refuse what must be refused before
a folder is made, evaluate into a fresh folder, mark it complete. Device and precision are resolved here, once."""

from __future__ import annotations

from pathlib import Path

from pneumocam.core.defaults import BATCH_SIZE, BOOTSTRAP_RESAMPLES, SEED
from pneumocam.core.errors import PneumocamError
from pneumocam.core.messages import note
from pneumocam.core.outputs import mark_complete, new_run_folder
from pneumocam.core.precision import autocast, resolve_precision
from pneumocam.data import discover
from pneumocam.evaluation.ensemble import evaluate_ensemble, member_size
from pneumocam.evaluation.evaluate import evaluate_split
from pneumocam.evaluation.leakage import refuse_seen
from pneumocam.model.network import resolve_device
from pneumocam.model.session import InferenceSession
from pneumocam.pipeline.models import open_model


def evaluate_checkpoints(
    checkpoints: list[Path],
    data: Path,
    split: str,
    out: Path,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    seed: int = SEED,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    strict: bool = False,
    precision: str = "auto",
    tta: bool = False,
) -> tuple[Path, dict]:
    """(the evaluation folder, metrics.json's content) of one checkpoint, or of the ensemble of several (the mean of
    their calibrated probabilities, decided at 0.5)."""
    if tta and len(checkpoints) > 1:
        raise PneumocamError("--tta reads one model's films in several views; it is not built for an ensemble")
    target = resolve_device(device)
    members = [open_model(path, target, data, split, batch_size) for path in checkpoints]
    member_size(members)  # refuse mixed sizes before a folder is made
    if strict:  # fail before a folder is made
        for _, metadata in members:
            refuse_seen(metadata, discover(data).split(split))
    folder = new_run_folder(out, prefix=f"evaluate-{split}")
    resolved = resolve_precision(precision, target)
    note(f"precision: {resolved.used} ({resolved.reason})")
    if len(members) > 1:
        paths = [str(path) for path in checkpoints]
        with autocast(resolved, target):
            result = evaluate_ensemble(
                members, paths, str(data), split, folder, batch_size, target, bootstrap, seed,
                strict=strict, precision=resolved.to_dict(),
            )  # fmt: skip
    else:
        (model, metadata), path = members[0], str(checkpoints[0])
        session = InferenceSession.of_model(model, metadata, path, target, resolved)
        result = evaluate_split(session, str(data), split, folder, batch_size, bootstrap, seed, strict, tta)
    mark_complete(folder)
    return folder, result
