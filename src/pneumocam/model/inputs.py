"""ModelInputs: how a checkpoint reads a film, built from its metadata, and the one place every command asks.

A model.pt records its input size, its --focus and the lung masks its training focused on. Training, `evaluate`,
`run`, `predict` and the viewer all turn films into the model's input here, and put its maps back on the film
here, so a --focus lungs model is fed the same way by each. Where the lungs come from, first found wins:
masks this run was given (`run --lung-masks`), the masks the training focused on (matched by split, class and
name, so new films have none), a learned lung model (`run --lung-model`), the classical estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pneumocam.anatomy.focus import FOCUS_MODES, Focused, check_focus, film_maps, focus_image, focus_images
from pneumocam.core.defaults import IMAGE_SIZE
from pneumocam.data import LoadedImages, PreparedData


@dataclass(frozen=True)
class ModelInputs:
    image_size: int = IMAGE_SIZE
    focus: str = "none"  # one of anatomy.focus.FOCUS_MODES
    lung_masks: str | None = None  # the masks the training focused on (TrainConfig.focus_masks)

    def __post_init__(self):
        check_focus(self.focus)

    @classmethod
    def of_checkpoint(cls, meta: dict) -> ModelInputs:
        """From a model.pt's metadata (model.network.load_checkpoint)."""
        config = meta.get("config") or {}
        return cls(int(meta.get("image_size", IMAGE_SIZE)), meta.get("focus", "none"), config.get("focus_masks"))

    @classmethod
    def of_training(cls, config) -> ModelInputs:
        """From a TrainConfig, before there is a checkpoint (the training films themselves)."""
        return cls(int(config.image_size), config.focus, config.focus_masks)

    @property
    def focused(self) -> bool:
        return self.focus != FOCUS_MODES[0]

    def read(self, loaded: LoadedImages, lung_masks: str | None = None, lung_model: str | None = None) -> Focused:
        """Every film of `loaded` as the model reads it, with its box on the film (the whole film for focus none)."""
        return focus_images(loaded, self.focus, lung_masks or self.lung_masks, lung_model)

    def read_one(self, gray: np.ndarray, lungs: np.ndarray | None = None, body: np.ndarray | None = None):
        """(one film as the model reads it, its box): the viewer's path, with the lungs and body it estimated."""
        return focus_image(gray, self.focus, lungs, body)

    def inputs(self, loaded: LoadedImages, lung_masks: str | None = None, lung_model: str | None = None):
        """`loaded` with its images replaced by what the model reads."""
        return loaded if not self.focused else self.read(loaded, lung_masks, lung_model).inputs(loaded)

    def on_film(self, maps: np.ndarray, boxes: np.ndarray, grid: int | None = None) -> np.ndarray:
        """Maps computed on the model's inputs, put back where each input lies on its film (unchanged for focus
        none). grid: the film grid's side (anatomy.focus.film_maps' default when None)."""
        return maps if not self.focused else film_maps(maps, boxes, self.image_size, grid)

    def prepared(self, prepared: PreparedData) -> tuple[PreparedData, np.ndarray | None]:
        """The training and validation films as the model will read them, and the training films' boxes (None for
        focus none, where nothing changes)."""
        if not self.focused:
            return prepared, None
        train, val = (self.read(part) for part in (prepared.train, prepared.val))
        return replace(prepared, train=train.inputs(prepared.train), val=val.inputs(prepared.val)), train.boxes
