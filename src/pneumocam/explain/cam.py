"""Class activation maps on a one-logit model (pneumocam's ResNet50 or a foreign model's adapter), batched.

`CamMethod` owns the model, the target layer (what the model declares, layer4 on the ResNet50; checked by name), the
batching and the result; `BaseCAM` adds the hook of the Grad-CAM kernel (model/gradcam.py, shared with the attention
penalty), and each gradient method is a tiny subclass that turns (activations, gradients) into a map; `LibraryCAM`
runs pytorch-grad-cam's methods under the same call. The hook replaces the layer's output with a detached leaf that
requires grad, so autograd records only the few layers after it: one forward pass plus a backward through pooling and
the dense head, instead of a backward through the whole network into every weight. Maps are returned raw (after ReLU,
not normalised) at feature resolution; `upsample` brings them to the input size.

Targets: the score explained for PNEUMONIA is the logit, for NORMAL its negative (as pytorch-grad-cam's
BinaryClassifierOutputTarget does), chosen per image as the predicted class, the true class or a fixed class.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pneumocam import CLASS_NAMES
from pneumocam.core.defaults import BATCH_SIZE
from pneumocam.core.errors import SettingError
from pneumocam.core.progress import enabled, track
from pneumocam.data import to_model_input
from pneumocam.model.adapter import ClassifierAdapter, cam_layer, check_layer
from pneumocam.model.gradcam import captured, explained_score, grad_cam
from pneumocam.model.network import early_features, pooled_features, probability

TARGETS = ("pred", "true", "PNEUMONIA", "NORMAL")


@dataclass
class CamResult:
    maps: np.ndarray  # float32 (N, h, w): raw maps from native methods; per-image normalised when `normalised`
    logits: np.ndarray  # float64 (N,)
    targets: np.ndarray  # int8 (N,): the class each map explains
    method: str
    layer: str
    normalised: bool = False
    features: np.ndarray | None = None  # float32 (N, D): `pooled_features` of each film (the guard's input)

    @property
    def probs(self) -> np.ndarray:

        return probability(self.logits)


def resolve_targets(target: str, logits: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    if target == "pred":
        return (logits > 0).astype(np.int8)
    if target == "true":
        if labels is None:
            raise SettingError("target", "true needs the images' labels")
        return np.asarray(labels, dtype=np.int8)
    if target in CLASS_NAMES:
        return np.full(len(logits), CLASS_NAMES.index(target), dtype=np.int8)
    raise SettingError("target", f"must be one of {', '.join(TARGETS)}, got '{target}'")


@contextmanager
def _explaining(model: nn.Module, weight_grads: bool = False):
    """Eval mode, and no weight gradients unless a library method needs the full graph;
    restores the caller's requires_grad flags, mode and (absent) gradients afterwards."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.requires_grad_(weight_grads)
    model.eval()
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
            if weight_grads:
                p.grad = None
        model.train(was_training)


@dataclass
class BatchMaps:
    """One batch's maps, logits, explained classes and pooled features (None where the method has none)."""

    maps: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    features: np.ndarray | None


class CamMethod:
    """What every CAM method shares: the model, the layer (by name, checked), batching, the explaining state of the
    model (eval mode, gradients only where needed) and the result. A method implements `explain_batch`."""

    method = "base"
    normalised = False  # True: the maps come min-max normalised per image (nothing raw to score)
    weight_grads = False  # True: the method needs weight gradients (a library that backpropagates through all)

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        batch_size: int = BATCH_SIZE,
        device: torch.device | str | None = None,
    ):
        layer = check_layer(model, layer or cam_layer(model))  # default: what the model declares (layer4: ResNet50)
        self.model, self.layer_name, self.batch_size = model, layer, batch_size
        self.layer = model.get_submodule(layer)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    def explain_batch(self, x: torch.Tensor, target: str, labels: np.ndarray | None) -> BatchMaps:
        raise NotImplementedError

    @contextmanager
    def explaining(self):
        """The model's state while this method explains (entered once per call, around every batch)."""
        with _explaining(self.model, weight_grads=self.weight_grads):
            yield

    def __call__(
        self,
        images: np.ndarray | torch.Tensor,
        target: str = "pred",
        labels: np.ndarray | None = None,
        description: str = "Grad-CAM",
    ) -> CamResult:
        """images: (N, H, W) uint8 grayscale. Returns the maps at the method's resolution (raw at feature resolution
        for the native methods)."""
        parts: list[BatchMaps] = []
        starts = range(0, len(images), self.batch_size)
        with self.explaining():
            for start in track(starts, description, total=len(starts)):
                chunk = images[start : start + self.batch_size]
                batch = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
                part_labels = None if labels is None else np.asarray(labels)[start : start + self.batch_size]
                parts.append(self.explain_batch(self.model_input(batch), target, part_labels))
        features = None if any(p.features is None for p in parts) else np.concatenate([p.features for p in parts])
        return CamResult(
            np.concatenate([p.maps for p in parts]).astype(np.float32),
            np.concatenate([p.logits for p in parts]),
            np.concatenate([p.targets for p in parts]),
            self.method,
            self.layer_name,
            normalised=self.normalised,
            features=features,
        )

    def model_input(self, batch: torch.Tensor) -> torch.Tensor:
        return to_model_input(batch.to(self.device))


class BaseCAM(CamMethod):
    """The gradient methods: the hook (model.gradcam.captured) makes the layer's output a leaf, so the backward runs
    only through the layers after it; each subclass turns (activations, gradients) into a map in `weigh`."""

    def weigh(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) activations and gradients -> (N, h, w) map before ReLU."""
        raise NotImplementedError

    def explain_batch(self, x: torch.Tensor, target: str, labels: np.ndarray | None) -> BatchMaps:
        early: dict[str, torch.Tensor] = {}
        guard_layers = self.layer_name == "layer4" and hasattr(self.model, "layer2")  # a pneumocam ResNet50
        keep_early = (
            [
                getattr(self.model, name).register_forward_hook(
                    lambda _m, _i, output, name=name: early.__setitem__(name, output.detach())
                )
                for name in ("layer1", "layer2")
            ]
            if guard_layers
            else []
        )
        try:
            with captured(self.model, self.layer_name, as_leaf=True) as found, torch.enable_grad():
                logits = self.model(x).flatten()
                targets = resolve_targets(target, logits.detach().float().cpu().numpy(), labels)
                activations = found["activations"]
                (grads,) = torch.autograd.grad(explained_score(logits, targets), activations)
        finally:
            for hook in keep_early:
                hook.remove()
        with torch.no_grad():
            maps = F.relu(self.weigh(activations.detach().float(), grads.float()))
            pooled = (  # as `pooled_features` lays them out: layer4's, then the guard's early parts
                torch.cat(
                    [
                        activations.detach().float().mean(dim=(2, 3)),
                        early_features(x, early["layer1"], early["layer2"]),
                    ],
                    dim=1,
                )
                if guard_layers
                else activations.detach().float().mean(dim=(2, 3))  # a foreign model: its layer's (its guard's input)
                if isinstance(self.model, ClassifierAdapter)
                else None
            )
        return BatchMaps(
            maps.cpu().numpy().astype(np.float32),
            logits.detach().double().cpu().numpy(),
            targets,
            None if pooled is None else pooled.cpu().numpy(),
        )


class GradCAM(BaseCAM):
    """Selvaraju et al. 2017: channel weights are the spatially averaged gradients."""

    method = "gradcam"

    def weigh(self, activations, grads):
        return grad_cam(activations, grads)


class HiResCAM(BaseCAM):
    """Draelos and Carin 2020: element-wise gradient x activation, summed over channels."""

    method = "hirescam"

    def weigh(self, activations, grads):
        return (grads * activations).sum(dim=1)


class GradCAMPlusPlus(BaseCAM):
    """Chattopadhay et al. 2018: positive gradients weighted per location by alpha (their eq. 19, with the
    exponential head's higher derivatives written as powers of the first), the layout pytorch-grad-cam uses."""

    method = "gradcam++"

    def weigh(self, activations, grads):
        g2 = grads.pow(2)
        denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g2 * grads + 1e-6
        alpha = torch.where(grads != 0, g2 / denominator, torch.zeros_like(grads))
        weights = (F.relu(grads) * alpha).sum(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(dim=1)


class LayerCAM(BaseCAM):
    """Jiang et al. 2021: activations weighted element-wise by their positive gradients."""

    method = "layercam"

    def weigh(self, activations, grads):
        return (F.relu(grads) * activations).sum(dim=1)


def _gate_library_progress() -> None:
    """pytorch-grad-cam's ScoreCAM draws a tqdm bar per call: show it only where pneumocam's own bars show (never
    from a server's worker thread)."""
    import pytorch_grad_cam.score_cam as score_cam  # deferred: only the pytorch-grad-cam methods need it

    if getattr(score_cam.tqdm, "gated_by_pneumocam", False):
        return

    library_tqdm = score_cam.tqdm.tqdm
    score_cam.tqdm = SimpleNamespace(
        tqdm=lambda iterable, *args, **kwargs: library_tqdm(iterable, *args, **kwargs) if enabled() else iterable,
        gated_by_pneumocam=True,
    )


class LibraryCAM(CamMethod):
    """Methods from pytorch-grad-cam behind the same call; its maps come normalised per image at input size,
    so nothing raw can be computed from them (importance leaves mean_raw out). They run in fp32 whatever precision
    the caller chose (the library hands back numpy arrays)."""

    NAMES = {"eigencam": "EigenCAM", "scorecam": "ScoreCAM"}
    normalised = True
    weight_grads = True

    def __init__(
        self, model: nn.Module, method: str, layer: str | None = None, batch_size: int = BATCH_SIZE, device=None
    ):
        import pytorch_grad_cam  # deferred: only the pytorch-grad-cam methods need it

        super().__init__(model, layer, batch_size, device)
        self.method = method
        self.cam_class = getattr(pytorch_grad_cam, self.NAMES[method])
        _gate_library_progress()

    @contextmanager
    def explaining(self):
        with super().explaining(), torch.autocast(self.device.type, enabled=False):
            self.cam = self.cam_class(model=self.model, target_layers=[self.layer])
            if hasattr(self.cam, "batch_size"):
                self.cam.batch_size = self.batch_size
            yield

    def model_input(self, batch: torch.Tensor) -> torch.Tensor:
        return to_model_input(batch.to(self.device), channels_last=False)

    def explain_batch(self, x: torch.Tensor, target: str, labels: np.ndarray | None) -> BatchMaps:
        from pytorch_grad_cam.utils.model_targets import (
            BinaryClassifierOutputTarget,  # deferred: only the pytorch-grad-cam methods need it
        )

        with torch.no_grad():
            if isinstance(self.model, ClassifierAdapter):  # a foreign model: its logit, no guard features
                pooled, logits = None, self.model(x).flatten().double().cpu().numpy()
            else:
                pooled = pooled_features(self.model, x)
                logits = self.model.fc(pooled[:, : self.model.fc.in_features]).flatten().double().cpu().numpy()
        targets = resolve_targets(target, logits, labels)
        maps = self.cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(int(c)) for c in targets])
        return BatchMaps(maps, logits, targets, None if pooled is None else pooled.float().cpu().numpy())


NATIVE = {cls.method: cls for cls in (GradCAM, HiResCAM, GradCAMPlusPlus, LayerCAM)}  # raw maps
METHODS = (*NATIVE, *LibraryCAM.NAMES)
# What one film costs: "fast" methods take one forward pass and a short backward (EigenCAM: one forward and an SVD
# of layer4's activations), "slow" ones a forward pass per batch of masked inputs (ScoreCAM: one per layer4
# channel, 2048; 80-146 s for one film on 2 CPU cores). The viewer serves slow methods only when asked to.
METHOD_COST = {**dict.fromkeys(NATIVE, "fast"), "eigencam": "fast", "scorecam": "slow"}


def make_cam(
    model: nn.Module, method: str = "gradcam", layer: str | None = None, batch_size: int = BATCH_SIZE, device=None
):
    if method in NATIVE:
        return NATIVE[method](model, layer, batch_size, device)
    if method in LibraryCAM.NAMES:
        return LibraryCAM(model, method, layer, batch_size, device)
    raise SettingError("method", f"must be one of {', '.join(METHODS)}, got '{method}'")


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), bilinear with half-pixel centres: OpenCV's resize, equal to torch's
    interpolate(align_corners=False) within float rounding (tested) and ~10x faster for one map (the viewer)."""

    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps.copy()
    out = np.empty((len(maps), size, size), dtype=np.float32)
    for i, one in enumerate(maps):
        out[i] = cv2.resize(one, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def normalise_per_image(maps: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Min-max per image, as pytorch-grad-cam's scale_cam_image does."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    shifted = maps - low
    return shifted / (eps + shifted.max(axis=(-2, -1), keepdims=True))
