"""InferenceSession: one model and everything that decides how it answers, resolved once at the edge.

A session holds the network and its metadata, how it reads a film (ModelInputs), its domain-shift guard, the
threshold it decides at (core.schema's rule over what the checkpoint recorded), and the device and precision its
forward passes run in. `run`, `evaluate`, `predict` and the viewer each open one and ask it: none of them loads a
checkpoint, reads its threshold, applies its guard or enters its precision another way.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pneumocam.core.errors import PneumocamError
from pneumocam.core.precision import Precision, autocast
from pneumocam.core.schema import decide, decision_record, decision_threshold
from pneumocam.model.foreign import VALIDATION_THRESHOLD, is_foreign, open_foreign
from pneumocam.model.guard import Guard, Verdict, judged, load_guard, verdicts
from pneumocam.model.inputs import ModelInputs
from pneumocam.model.network import load_checkpoint


def load_model(spec: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """(the network in eval mode, its metadata) for a --model / --checkpoint value: a pneumocam model.pt, or a
    foreign model's spec (model.foreign: KIND:SOURCE,...) behind its adapter."""
    return open_foreign(spec, device) if is_foreign(spec) else load_checkpoint(spec, device)


@dataclass(frozen=True)
class InferenceSession:
    model: nn.Module  # in eval mode, its calibration folded into the head (load_checkpoint)
    meta: dict  # model.pt's metadata
    checkpoint: str | None  # the model.pt it came from (None: a network built in memory, with no guard)
    reads: ModelInputs  # how it reads a film: size, focus, the lung masks its training focused on
    guard: Guard | None  # the domain-shift guard stored in model.pt (None: input checks only)
    device: torch.device
    precision: Precision | None  # what its forward passes run in (None: fp32, not recorded)

    @classmethod
    def open(
        cls, checkpoint: str | os.PathLike, device: torch.device, precision: Precision | None = None
    ) -> InferenceSession:
        """The session of a pneumocam model.pt or a foreign model's spec. device and precision come resolved
        (core.precision.resolve_precision, model.network.resolve_device): the entry point that opens the session
        resolves them, once."""
        model, meta = load_model(checkpoint, device)
        if ((meta.get("foreign") or {}).get("options") or {}).get("threshold") == VALIDATION_THRESHOLD:
            raise PneumocamError(
                f"{checkpoint}: threshold=val is chosen on a dataset's val split, which this command does not read; "
                "choose it with `pneumocam evaluate --model ... --split test` (metrics.json's decision), then give "
                "threshold=NUMBER"
            )
        return cls.of_model(model, meta, checkpoint, device, precision)

    @classmethod
    def of_model(
        cls, model: nn.Module, meta: dict, checkpoint=None, device="cpu", precision: Precision | None = None
    ) -> InferenceSession:
        """A session over a network already loaded (or built: checkpoint None, no guard). A foreign model has no
        guard of pneumocam's (the input checks only; results say so)."""
        guard = load_guard(checkpoint) if checkpoint and not is_foreign(checkpoint) else None
        where = None if checkpoint is None else str(checkpoint)
        return cls(model, meta, where, ModelInputs.of_checkpoint(meta), guard, torch.device(device), precision)

    @property
    def foreign(self) -> dict | None:
        """What a foreign model declared (model.foreign), None for a pneumocam model."""
        return self.meta.get("foreign")

    @functools.cached_property
    def threshold(self) -> float:
        """The threshold every decision of this model uses (core.schema.decision_threshold), read once."""
        return decision_threshold(self.meta)[0]

    @functools.cached_property
    def threshold_source(self) -> str:
        """How that threshold was chosen, in words."""
        return decision_threshold(self.meta)[2]

    def decision(self) -> dict:
        """metrics.json's and results.json's "decision" record."""
        return decision_record(self.meta)

    def decide(self, probs) -> np.ndarray:
        """1 (PNEUMONIA) where p >= this model's threshold."""
        return decide(probs, self.threshold)

    def running(self):
        """The context every forward pass of this session runs in: its precision on its device."""
        return autocast(self.precision, self.device)

    def verdicts(self, features: np.ndarray | None, paths: list[str], grays) -> list[Verdict]:
        """The guard's verdict on each film: the input checks, then the feature distance when fitted."""
        return verdicts(self.guard, features, paths, grays)

    def judge(self, features: np.ndarray | None, reasons: list[str]) -> list[Verdict]:
        """The guard's verdict on each film whose input checks gave `reasons` ("" where they passed)."""
        return judged(self.guard, features, reasons)

    def precision_record(self) -> dict | None:
        return None if self.precision is None else self.precision.to_dict()
