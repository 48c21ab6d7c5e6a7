"""Any chest X-ray classifier as pneumocam's one-logit model: what a foreign model must declare to be audited.

A model is audited through what pneumocam feeds every model (a film at its input size, data.transforms.to_model_input:
ImageNet mean/std over three copies of the grey film) and what it reads back (one logit for PNEUMONIA, whose sigmoid
is the probability). `ClassifierAdapter` wraps the foreign network so it takes that input and gives that logit, with
what the network declares:
- how it reads a film (`Reading`): its input size, one or three channels, and its normalisation: ImageNet's mean and
  std, TorchXRayVision's [-1024, 1024], [0, 1], or a callable of the [0, 1] film;
- which output is PNEUMONIA: an index, or a name among its labels (a multi-label model's chosen label), read as a
  sigmoid (the logit itself) or as a softmax (the logit of that class against the others,
  z_k - logsumexp(z_j, j != k), whose sigmoid is the softmax probability);
- the layer the CAM methods read, by name, checked against the network's layers.
Loaders: a Python object (`from_module`, for notebooks), a torchvision architecture with a state_dict
(`from_torchvision`), a TorchScript file (`from_torchscript`) and a TorchXRayVision model by name (`from_xrv`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from pneumocam.core.defaults import IMAGE_SIZE
from pneumocam.core.errors import CheckpointError, SettingError
from pneumocam.data.transforms import IMAGENET_MEAN, IMAGENET_STD

NORMALISATIONS = ("imagenet", "xrv", "unit")
ACTIVATIONS = ("sigmoid", "softmax")
XRV_RANGE = 1024.0  # TorchXRayVision reads a film as values in [-1024, 1024]


@dataclass(frozen=True)
class Reading:
    """How a foreign model reads a film."""

    size: int = IMAGE_SIZE
    channels: int = 3  # 1 or 3
    normalisation: str | Callable[[torch.Tensor], torch.Tensor] = "imagenet"  # or a callable of the [0, 1] film

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise SettingError("channels", f"must be 1 or 3, got {self.channels}")
        if not callable(self.normalisation) and self.normalisation not in NORMALISATIONS:
            raise SettingError("normalisation", f"must be one of {', '.join(NORMALISATIONS)} or a callable")

    def __call__(self, film: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) film in [0, 1] -> what the model reads."""
        if callable(self.normalisation):
            x = self.normalisation(film)
        elif self.normalisation == "xrv":
            x = (2 * film - 1) * XRV_RANGE
        elif self.normalisation == "unit":
            x = film
        else:
            x = film.expand(-1, 3, -1, -1) if self.channels == 3 else film
            mean = torch.tensor(IMAGENET_MEAN[: x.shape[1]], device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(IMAGENET_STD[: x.shape[1]], device=x.device).view(1, -1, 1, 1)
            return (x - mean) / std
        return x.expand(-1, 3, -1, -1) if self.channels == 3 and x.shape[1] == 1 else x


def cam_layer(model: nn.Module) -> str:
    """The layer the CAM methods read on this model: what an adapter declared, layer4 for pneumocam's ResNet50."""
    if isinstance(model, ClassifierAdapter):
        if model.layer is None:
            shallow = ", ".join(n for n in layer_names(model.net) if n.count(".") <= 1)
            raise SettingError(
                "layer",
                f"the model declares no layer for the CAM methods: give layer=NAME; its layers "
                f"to two levels: {shallow}",
            )
        return model.layer
    return "layer4"


def layer_names(net: nn.Module) -> list[str]:
    return [name for name, _ in net.named_modules() if name]


def check_layer(net: nn.Module, layer: str) -> str:
    """The layer's name when the network has it; else a one-line SettingError listing its layers to two levels."""
    names = layer_names(net)
    if layer not in names:
        shallow = ", ".join(n for n in names if n.count(".") <= 1)
        raise SettingError(
            "layer",
            f"'{layer}' is not a layer of this model; its layers to two levels: {shallow} (deeper ones by their full "
            "name, as model.named_modules() gives them)",
        )
    return layer


class ClassifierAdapter(nn.Module):
    """A foreign classifier behind pneumocam's input and its one PNEUMONIA logit (see the module's docstring)."""

    def __init__(
        self,
        net: nn.Module,
        output: int | str = 0,
        labels: Sequence[str] | None = None,
        activation: str = "sigmoid",
        reading: Reading = Reading(),
        layer: str | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise SettingError("activation", f"must be one of {', '.join(ACTIVATIONS)}, got '{activation}'")
        if isinstance(output, str):
            if not labels or output not in labels:
                known = ", ".join(labels) if labels else "none: give labels, or the output's index"
                raise SettingError("output", f"'{output}' is not one of the model's outputs; its outputs: {known}")
            output = list(labels).index(output)
        self.net, self.index, self.activation, self.reading = net.eval(), int(output), activation, reading
        self.labels = list(labels) if labels else None
        self.layer = f"net.{check_layer(net, layer)}" if layer else None  # as the CAM methods address it here
        self.eval()  # audited, never trained here: its BatchNorm keeps its running statistics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: what pneumocam feeds a model (ImageNet-normalised copies of the grey film) -> (N, 1) PNEUMONIA logit."""
        grey = x[:, :1] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # the film in [0, 1], as to_model_input read it
        out = self.net(self.reading(grey))
        out = out.reshape(len(out), -1)
        if self.index >= out.shape[1]:
            raise SettingError("output", f"index {self.index}, but the model gives {out.shape[1]} outputs")
        if self.activation == "sigmoid":
            return out[:, self.index : self.index + 1]
        others = torch.cat([out[:, : self.index], out[:, self.index + 1 :]], dim=1)
        return out[:, self.index : self.index + 1] - torch.logsumexp(others, dim=1, keepdim=True)


def from_module(net: nn.Module, **declared) -> ClassifierAdapter:
    """A Python object (a notebook's model), with what it declares (ClassifierAdapter's arguments)."""
    return ClassifierAdapter(net, **declared)


def from_torchvision(arch: str, state_dict: str | os.PathLike, num_outputs: int, **declared) -> ClassifierAdapter:
    """A torchvision architecture by name with `num_outputs` outputs and its weights from a state_dict file, loaded
    with weights_only=True; keys and shapes checked."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise SettingError("arch", f"'{arch}' is not a torchvision classification architecture")
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_outputs)
    path = Path(state_dict)
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot load {state_dict} into {arch}: {str(exc).splitlines()[0]}") from None
    return ClassifierAdapter(net, **declared)


def from_torchscript(path: str | os.PathLike, **declared) -> ClassifierAdapter:
    """A TorchScript file (torch.jit.save): loaded as code and weights, no pickle."""
    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot load {path} as TorchScript: {str(exc).splitlines()[0]}") from None
    return ClassifierAdapter(net, **declared)


def from_xrv(name: str = "densenet121-res224-all", output: str = "Pneumonia", weights: bool = True, **declared):
    """A TorchXRayVision model by its weights' name, reading films as TorchXRayVision does (one channel, 224 px,
    [-1024, 1024]); its labels are its pathologies. weights=False builds the architecture with random weights.
    Offline, weights missing from TorchXRayVision's cache are a one-line error naming the file and the folder."""
    import torchxrayvision as xrv  # deferred: an optional dependency, only this loader needs it

    if name not in xrv.models.model_urls:
        raise SettingError("xrv", f"'{name}' is not a TorchXRayVision model; one of {', '.join(xrv.models.model_urls)}")
    about = xrv.models.model_urls[name]
    if weights:
        cache = Path(os.path.expanduser(os.path.join("~", ".torchxrayvision", "models_data")))
        file = cache / os.path.basename(about["weights_url"])
        if not file.is_file() and os.environ.get("PNEUMOCAM_OFFLINE"):
            raise CheckpointError(
                f"TorchXRayVision's weights for {name} are not in its cache: put {file.name} in {cache} (downloaded "
                "where there is internet), or use weights=False for the architecture with random weights"
            )
        net = xrv.models.get_model(name)
    else:
        net = xrv.models.DenseNet(weights=None, num_classes=len(about["labels"]))
    reading = Reading(int(about.get("input_resolution", IMAGE_SIZE)), 1, "xrv")
    declared = {"layer": "features.denseblock4", "activation": "sigmoid"} | declared
    return ClassifierAdapter(net, output=output, labels=about["labels"], reading=reading, **declared)
