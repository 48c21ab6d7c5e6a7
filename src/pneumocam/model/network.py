"""ResNet50 with a one-logit head, weights from torchvision / a local file / none, freeze policies, checkpoints.

Head: the model's own global average pooling, then one dense layer giving one logit for PNEUMONIA;
p(PNEUMONIA) = sigmoid(logit). NORMAL = 0, PNEUMONIA = 1. `model.layer4` stays intact for Grad-CAM.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from scipy.special import expit
from torch import nn
from torch.nn import functional as F
from torchvision.models import ResNet50_Weights, resnet50

from pneumocam import started_random
from pneumocam.core.errors import CheckpointError, SettingError, WeightsError
from pneumocam.core.outputs import atomic_write_bytes

ARCH = "resnet50"
HEAD = "global average pooling + Linear(2048, 1); p(PNEUMONIA) = sigmoid(logit)"
MODES = ("frozen", "partial", "full")
DEVICES = ("auto", "cpu", "cuda")
# The freeze policy, in one place: the top-level children that train in each mode (None: all of them).
TRAINABLE: dict[str, tuple[str, ...] | None] = {"frozen": ("fc",), "partial": ("layer4", "fc"), "full": None}
CHECKPOINT_FORMAT = "pneumocam-checkpoint"
CHECKPOINT_VERSION = 1
IMAGENET_VARIANTS = {"imagenet": "IMAGENET1K_V2", "imagenet-v2": "IMAGENET1K_V2", "imagenet-v1": "IMAGENET1K_V1"}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")


@dataclass
class WeightsInfo:
    source: str  # "none", "imagenet" or "file"
    description: str
    path: str | None = None
    sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    from_random: bool = False  # a pneumocam checkpoint whose own training started from random weights
    # A pneumocam checkpoint's record of the films that trained and selected it (train.py joins it to the new
    # model's); large, so left out of to_dict.
    seen: dict | None = field(default=None, repr=False)

    @property
    def is_random(self) -> bool:
        return started_random(self.to_dict())

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "seen"}


def new_resnet50() -> nn.Module:

    model = resnet50(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 1)
    return model


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, dict | None]:
    """(state_dict, sha256, a pneumocam checkpoint's metadata or None), loaded safely (weights_only=True); the
    sha256 prefix a torchvision file name carries is checked."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    digest = file_sha256(path)
    match = _HASH_IN_NAME.search(path.name)
    if match and not digest.startswith(match.group(1)):
        raise WeightsError(
            f"{path} is damaged or not the file its name claims: sha256 starts with {digest[: len(match.group(1))]}, "
            f"the name says {match.group(1)}; download it again"
        )
    obj = read_torch_file(path, WeightsError, "as PyTorch weights (corrupt, or not a state_dict)")
    metadata = obj.get("metadata") if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT else None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a pneumocam checkpoint or a common training-script wrapper
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of parameter names to tensors)")
    return dict(obj), digest, metadata


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> list[str]:
    """Copy a ResNet50 state_dict into the model; a head of another shape (ImageNet's 1000 classes) is skipped."""
    expected = model.state_dict()
    notes = []
    backbone_expected = {k for k in expected if not k.startswith("fc.")}
    backbone_given = {k for k in state if not k.startswith("fc.")}
    missing, unexpected = sorted(backbone_expected - backbone_given), sorted(backbone_given - backbone_expected)
    if missing or unexpected:
        raise WeightsError(
            f"{origin} is not a torchvision ResNet50 state_dict: {len(missing)} missing keys "
            f"(e.g. {', '.join(missing[:3]) or '-'}), {len(unexpected)} unexpected keys (e.g. "
            f"{', '.join(unexpected[:3]) or '-'})"
        )
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(backbone_expected)
        if state[k].shape != expected[k].shape
    ]
    if wrong:
        raise WeightsError(
            f"{origin} has {len(wrong)} tensors of the wrong shape for ResNet50, e.g. {'; '.join(wrong[:3])}"
        )
    head = {k: v for k, v in state.items() if k.startswith("fc.")}
    if head and all(k in expected and v.shape == expected[k].shape for k, v in head.items()):
        keep = state
    else:
        keep = {k: v for k, v in state.items() if not k.startswith("fc.")}
        notes.append(
            "head (fc) initialised fresh: the file's head has another shape" if head else "head (fc) initialised fresh"
        )
    model.load_state_dict(keep, strict=False)
    return notes


def imagenet_cache_file(variant: str) -> tuple[Path, str]:

    url = ResNet50_Weights[variant].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


DOWNLOAD_TIMEOUT_S = 10.0  # per connect / read: offline machines must fail fast, not hang on a download


def _download(url: str, path: Path, message: str) -> None:
    """torch.hub's download with a socket timeout (it sets none): an unreachable or silent host fails within seconds."""

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(
            url, str(path), hash_prefix=_HASH_IN_NAME.search(path.name).group(1), progress=True
        )
    except Exception as exc:  # offline, proxy, timeout, disk: all end in the same advice
        raise WeightsError(f"{message}. (Download failed: {exc})") from exc
    finally:
        socket.setdefaulttimeout(previous)


def build_model(
    weights: str = "none", seed: int | None = None, allow_download: bool | None = None
) -> tuple[nn.Module, WeightsInfo]:
    """A ResNet50 with a one-logit head. weights: none | imagenet | imagenet-v1 | imagenet-v2 | PATH."""
    if seed is not None:
        torch.manual_seed(seed)
    model = new_resnet50()
    spec = weights.strip()
    if spec.lower() == "none":
        return model, WeightsInfo(
            "none", "RANDOM INITIALISATION (no pretrained weights): results are not those of an ImageNet model"
        )
    if spec.lower() in IMAGENET_VARIANTS:
        variant = IMAGENET_VARIANTS[spec.lower()]
        path, url = imagenet_cache_file(variant)
        if allow_download is None:
            allow_download = os.environ.get("PNEUMOCAM_OFFLINE", "") in ("", "0")
        if not path.is_file():
            message = (
                f"ImageNet weights ResNet50 {variant} are not in the torch hub cache: expected the file {path.name} "
                f"in {path.parent} (set TORCH_HOME to use another cache). Copy the file there, pass it with "
                f"--weights /path/to/{path.name}, or run without pretrained weights: --weights none"
            )
            if not allow_download:
                raise WeightsError(message)
            _download(url, path, message)
        state, digest, _ = read_weights_file(path)
        notes = _load_into(model, state, str(path))
        return model, WeightsInfo("imagenet", f"torchvision ResNet50_Weights.{variant}", str(path), digest, notes)
    state, digest, metadata = read_weights_file(spec)
    notes = _load_into(model, state, spec)
    info = WeightsInfo("file", f"local file {os.path.basename(spec)}", str(Path(spec).resolve()), digest, notes)
    if metadata is not None:  # a pneumocam model.pt: what it started from, and what it has seen
        earlier = metadata.get("weights") or {}
        info.from_random = started_random(earlier)
        info.notes.append(f"a pneumocam checkpoint, itself trained from: {earlier.get('description', '?')}")
        info.seen = metadata.get("seen")
        if info.seen:
            info.notes.append("the films that trained and selected it count as seen by this model (leakage)")
    return model, info


def apply_mode(model: nn.Module, mode: str) -> list[nn.Parameter]:
    """Freeze per policy; return the parameters to train. frozen: head; partial: layer4 + head; full: all."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    trainable = TRAINABLE[mode]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trainable is None or name.split(".")[0] in trainable)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: nn.Module, mode: str) -> None:
    """Training mode only where weights train: frozen BatchNorm layers keep their running statistics."""
    model.train()
    if mode == "full":
        return
    keep_training = TRAINABLE[mode]
    for name, module in model.named_children():
        if name not in keep_training:
            module.eval()


def probability(logits):
    """p(PNEUMONIA) from the head's logit: the logistic function (scipy's expit, stable for large |logit|)."""

    return expit(logits)


def trainable_state(model: nn.Module, mode: str) -> dict[str, torch.Tensor]:
    """What changes during training in this mode (frozen: the head; partial: layer4 + head; full: all)."""
    keep = TRAINABLE[mode]
    return {
        k: v.detach().cpu().clone() for k, v in model.state_dict().items() if keep is None or k.split(".")[0] in keep
    }


def backbone_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled 2048-d features: everything before the dense head."""
    return pooled_features(model, x)[:, : model.fc.in_features]


THUMBNAIL_SIDE = 8  # the film as the model reads it, averaged to 8 x 8: its layout (body size, position, field)


def early_features(x: torch.Tensor, layer1: torch.Tensor, layer2: torch.Tensor) -> torch.Tensor:
    """What the guard reads besides layer4, from one forward's input and its layer1 and layer2 outputs, side by side:
    layer2's channel means, layer1's channel means and standard deviations (its texture: Huang & Belongie 2017's
    feature statistics), and the input's first channel averaged to THUMBNAIL_SIDE x THUMBNAIL_SIDE."""
    layer1 = layer1.float()
    return torch.cat(
        [
            layer2.float().mean(dim=(2, 3)),
            layer1.mean(dim=(2, 3)),
            layer1.std(dim=(2, 3)),
            F.adaptive_avg_pool2d(x[:, :1].float(), THUMBNAIL_SIDE).flatten(1),
        ],
        dim=1,
    )


# The block each part of a `pooled_features` row needs the forward to reach, in the order the blocks run.
FEATURE_DEPTHS = ("layer1", "layer2", "layer4")
COLUMN_DEPTH = {
    "layer4": "layer4",
    "layer2": "layer2",
    "layer1 means": "layer1",
    "layer1 stds": "layer1",
    "layer1 moments": "layer1",
    "thumbnail": "layer1",
}


def pooled_features(model: nn.Module, x: torch.Tensor, deepest: str = "layer4") -> torch.Tensor:
    """What one forward keeps of a film: layer4's pooled features (the head's input), then `early_features`;
    `pooled_columns` says where each part lies. deepest: the last block run (FEATURE_DEPTHS); a reader that needs
    only the early parts (the guard's fit) stops there, and the columns of the blocks not run are NaN, so reading one
    by mistake can never pass for a feature."""
    if deepest not in FEATURE_DEPTHS:
        raise ValueError(f"deepest must be one of {', '.join(FEATURE_DEPTHS)}, got {deepest!r}")
    y = x
    for name in ("conv1", "bn1", "relu", "maxpool"):
        y = getattr(model, name)(y)
    layer1 = model.layer1(y)
    if deepest == "layer1":
        layer2 = torch.full((len(x), model.layer3[0].conv1.in_channels, 1, 1), float("nan"), device=x.device)
    else:
        layer2 = model.layer2(layer1)
    if deepest == "layer4":
        late = torch.flatten(model.avgpool(model.layer4(model.layer3(layer2))), 1)
    else:
        late = torch.full((len(x), model.fc.in_features), float("nan"), dtype=layer1.dtype, device=x.device)
    return torch.cat([late, early_features(x, layer1, layer2).to(late.dtype)], dim=1)


def pooled_columns(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Where each part of `pooled_features`' rows lies: (start, stop) columns."""
    widths = {
        "layer4": model.fc.in_features,
        "layer2": model.layer3[0].conv1.in_channels,
        "layer1 means": model.layer2[0].conv1.in_channels,
        "layer1 stds": model.layer2[0].conv1.in_channels,
        "thumbnail": THUMBNAIL_SIDE * THUMBNAIL_SIDE,
    }
    columns, start = {}, 0
    for name, width in widths.items():
        columns[name] = (start, start + width)
        start += width
    columns["layer1 moments"] = (columns["layer1 means"][0], columns["layer1 stds"][1])
    return columns


def pooled_width(model: nn.Module) -> int:
    return max(stop for _, stop in pooled_columns(model).values())


def save_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: dict) -> None:

    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(
        {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "state_dict": state, "metadata": metadata},
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())


def read_torch_file(path: Path, error: type[Exception], what: str):
    """torch.load(weights_only=True) of a file, every failure (empty, truncated, not PyTorch's format, a pickle
    that is not plain tensors) turned into `error` with a one-line reason."""
    try:
        if path.stat().st_size == 0:
            raise error(f"cannot read {path} {what}: the file is empty (0 bytes)")
        return torch.load(path, map_location="cpu", weights_only=True)
    except error:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, IndexError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise error(f"cannot read {path} {what}: {reason}") from exc


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, metadata) from a pneumocam model.pt, loaded with weights_only=True.

    The model's logit is the calibrated one: a temperature recorded in metadata["calibration"] is folded into the
    head, so every consumer (evaluate, predict, run, Grad-CAM) gets calibrated probabilities.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    obj = read_torch_file(path, CheckpointError, "as a checkpoint (corrupt or not a pneumocam checkpoint)")
    if not isinstance(obj, Mapping) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pneumocam checkpoint (for plain weights use --weights {path})")
    version = obj.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this pneumocam reads version {CHECKPOINT_VERSION}: "
            "use the pneumocam release that wrote it"
        )
    model = new_resnet50()
    try:
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} does not match the ResNet50 architecture: {str(exc).splitlines()[0]}") from exc
    metadata = dict(obj.get("metadata", {}))
    temperature = float((metadata.get("calibration") or {}).get("temperature", 1.0))
    if temperature != 1.0:  # calibrated probabilities everywhere: the head's logit is divided by T once, here
        with torch.no_grad():
            model.fc.weight.div_(temperature)
            model.fc.bias.div_(temperature)
    return model.to(device).eval(), metadata


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SettingError("device", "is cuda, but no CUDA device is available here: use cpu or auto")
    if device not in DEVICES:
        raise SettingError("device", f"must be one of {', '.join(DEVICES)}, got '{device}'")
    return torch.device(device)


def checkpoint_part(path: str | os.PathLike, key: str):
    """A part stored beside the weights in model.pt (e.g. the domain-shift guard); None when absent."""
    obj = read_torch_file(Path(path), CheckpointError, "as a checkpoint (corrupt or not a pneumocam checkpoint)")
    return obj.get(key) if isinstance(obj, Mapping) else None


def store_checkpoint_part(path: str | os.PathLike, key: str, value) -> None:
    """Add or replace one part of model.pt (weights and metadata untouched), written atomically."""

    obj = read_torch_file(Path(path), CheckpointError, "as a checkpoint (corrupt or not a pneumocam checkpoint)")
    if not isinstance(obj, Mapping) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pneumocam checkpoint")
    obj = dict(obj) | {key: value}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
