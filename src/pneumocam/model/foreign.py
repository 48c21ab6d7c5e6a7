"""`--model SPEC`: a foreign classifier named on the command line, opened as the model every command's session holds.

    KIND:SOURCE[,key=value,...]

    torchvision:PATH,arch=densenet121[,outputs=N]   a torchvision architecture and its state_dict file
    torchscript:PATH                                a TorchScript file (torch.jit.save)
    xrv:NAME[,weights=none]                         a TorchXRayVision model by its weights' name
    PATH                                            a pneumocam model.pt (no KIND)

Keys every kind takes (model.adapter's declarations): output (index or label name), labels (names joined by |),
activation (sigmoid | softmax), size, channels (1 | 3), normalisation (imagenet | xrv | unit), layer (the layer the
CAM methods read, checked by name) and threshold (a number, or `val`: chosen on the dataset's val split with the
same rule pneumocam's training uses, pipeline.models). A key a kind does not take is a one-line error listing those
it does. The model's metadata (what a pneumocam model.pt carries) says what is known of it and what is not: the
films it was trained on are unknown, so no leakage check is possible and the report says so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pneumocam.core.defaults import IMAGE_SIZE
from pneumocam.core.errors import SettingError
from pneumocam.data.transforms import to_model_input
from pneumocam.model.adapter import ClassifierAdapter, Reading, cam_layer, from_torchscript, from_torchvision, from_xrv
from pneumocam.model.network import file_sha256

KINDS = ("torchvision", "torchscript", "xrv")
IN_MEMORY = "python"  # a module handed over in Python (the API): named python:<class>, never opened from a spec
COMMON_KEYS = ("output", "labels", "activation", "size", "channels", "normalisation", "layer", "threshold")
KIND_KEYS = {"torchvision": ("arch", "outputs"), "torchscript": (), "xrv": ("weights",)}
VALIDATION_THRESHOLD = "val"  # threshold=val: chosen on the dataset's val split
# The layer the CAM methods read when a torchvision family's spec names none: the last block before pooling. DenseNet's
# last block, not its norm5, whose output DenseNet's in-place ReLU overwrites (pytorch-grad-cam's maps there differ
# from the Grad-CAM formula's by up to 0.2 of their range).
DEFAULT_LAYERS = {"resnet": "layer4", "resnext": "layer4", "wide_resnet": "layer4", "densenet": "features.denseblock4"}
UNKNOWN_TRAINING = (
    "a model pneumocam did not train: the films it was trained and selected on are unknown, so no leakage check is "
    "possible"
)


def is_foreign(spec: str | os.PathLike) -> bool:
    """Whether a --model / --checkpoint value names a foreign model (KIND:...) rather than a pneumocam model.pt."""
    return str(spec).split(":", 1)[0] in (*KINDS, IN_MEMORY)


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    source: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | os.PathLike) -> ModelSpec:
        """The spec's parts, each key checked against what its kind takes (a one-line error otherwise)."""
        kind, _, rest = str(text).partition(":")
        if kind not in KINDS:
            raise SettingError("model", f"'{text}' names no model kind: one of {', '.join(KINDS)}, or a model.pt")
        source, *pairs = rest.split(",")
        if not source:
            raise SettingError("model", f"'{text}': give the {kind} model's source after '{kind}:'")
        allowed = COMMON_KEYS + KIND_KEYS[kind]
        options = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in allowed:
                keys = ", ".join(allowed)
                raise SettingError("model", f"'{pair}' in '{text}': {kind} takes key=value with keys {keys}")
            options[key] = value
        if kind == "torchvision" and "arch" not in options:
            raise SettingError("model", f"'{text}': a torchvision model needs arch=NAME (e.g. arch=densenet121)")
        return cls(kind, source, options)

    @property
    def threshold(self) -> float | str | None:
        """The given threshold, VALIDATION_THRESHOLD, or None (the fixed 0.5)."""
        value = self.options.get("threshold")
        if value is None or value == VALIDATION_THRESHOLD:
            return value
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0.0 < number < 1.0:
            raise SettingError("model", f"threshold={value}: give a probability in (0, 1), or threshold=val")
        return number

    def declared(self) -> dict:
        """ClassifierAdapter's keyword arguments from the spec's keys."""
        o = self.options
        labels = o["labels"].split("|") if "labels" in o else None
        output: int | str = o.get("output", "0")
        output = int(output) if str(output).isdigit() else output
        reading = Reading(self._int("size", IMAGE_SIZE), self._int("channels", 3), o.get("normalisation", "imagenet"))
        declared = {"output": output, "labels": labels, "activation": o.get("activation", "sigmoid")}
        if self.kind != "xrv" or {"size", "channels", "normalisation"} & o.keys():
            declared["reading"] = reading
        if "layer" in o:
            declared["layer"] = o["layer"]
        elif self.kind == "torchvision":
            family = next((k for k in DEFAULT_LAYERS if o["arch"].startswith(k)), None)
            declared["layer"] = DEFAULT_LAYERS.get(family)
        return {k: v for k, v in declared.items() if v is not None}

    def _int(self, key: str, default: int) -> int:
        value = self.options.get(key, str(default))
        if not value.isdigit():
            raise SettingError("model", f"{key}={value}: give a whole number")
        return int(value)


def open_foreign(text: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[ClassifierAdapter, dict]:
    """(the adapter on `device` in eval mode, its metadata in model.pt's layout) for a foreign spec."""
    spec = ModelSpec.parse(text)
    threshold = spec.threshold  # checked before anything is loaded
    declared = spec.declared()
    if spec.kind == "torchvision":
        outputs = spec._int("outputs", len(declared.get("labels") or [None]))
        adapter = from_torchvision(spec.options["arch"], spec.source, outputs, **declared)
    elif spec.kind == "torchscript":
        adapter = from_torchscript(spec.source, **declared)
    else:
        output = declared.pop("output", "Pneumonia")
        declared.pop("labels", None)  # its labels are its pathologies
        random = spec.options.get("weights") == "none"
        adapter = from_xrv(spec.source, output if output != 0 else "Pneumonia", weights=not random, **declared)
    return adapter.to(device).eval(), foreign_metadata(spec, adapter, threshold)


def foreign_metadata(spec: ModelSpec, adapter: ClassifierAdapter, threshold) -> dict:
    """What a pneumocam model.pt's metadata would say, as far as it is known for a foreign model."""
    path = Path(spec.source)
    random = spec.kind == "xrv" and spec.options.get("weights") == "none"
    weights = {
        "source": "none" if random else "foreign",
        "description": (f"{spec.kind} model {spec.source}" + (" (its architecture, random weights)" if random else "")),
        "path": str(path) if path.is_file() else None,
        "sha256": file_sha256(path) if path.is_file() else None,
        "notes": [UNKNOWN_TRAINING],
        "from_random": random,
    }
    reading = adapter.reading
    foreign = asdict(spec) | {
        "output": adapter.labels[adapter.index] if adapter.labels else adapter.index,
        "activation": adapter.activation,
        "reading": {
            "size": reading.size,
            "channels": reading.channels,
            "normalisation": reading.normalisation if isinstance(reading.normalisation, str) else "callable",
        },
        "layer": adapter.layer,
    }
    meta = {"foreign": foreign, "weights": weights, "image_size": reading.size, "focus": "none"}
    if isinstance(threshold, float):
        meta["thresholds"] = {"youden_val": threshold, "youden_rule": "given with the model (--model threshold=)"}
    return meta


def module_metadata(adapter: ClassifierAdapter) -> dict:
    """The metadata of a module handed over in Python (the API), as foreign_metadata gives a spec's."""
    name = type(adapter.net).__name__
    return foreign_metadata(ModelSpec(IN_MEMORY, name), adapter, None)


@torch.inference_mode()
def layer_features(adapter: ClassifierAdapter, images, batch_size: int, device) -> np.ndarray:
    """The declared layer's activations averaged over positions, per film (uint8 films as pneumocam reads them):
    what a foreign model's guard reads, the same numbers its Grad-CAM pass returns as features."""
    found: list[np.ndarray] = []
    handle = adapter.get_submodule(cam_layer(adapter)).register_forward_hook(
        lambda _m, _i, out: found.append(out.float().mean(dim=(2, 3)).cpu().numpy())
    )
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
            adapter(to_model_input(batch, channels_last=False))
    finally:
        handle.remove()
    return np.concatenate(found)
