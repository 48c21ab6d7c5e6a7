"""From uint8 grayscale arrays to the 3-channel, ImageNet-normalised tensors the model takes."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(batch: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 3, H, W) float32, ImageNet mean/std, the grey value copied to all channels."""
    if batch.dtype != torch.uint8 or batch.ndim != 3:
        raise ValueError(f"expected a (N, H, W) uint8 batch, got {tuple(batch.shape)} {batch.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    x = (batch.unsqueeze(1).float() / 255.0 - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Augmentation:
    """Training augmentation (off in the faithful recipe): small rotation, shift, scale and contrast; with
    acquisition=True also what differs between scanners and sites: a gamma curve (log-uniform in 1/gamma_range ..
    gamma_range), blur or sharpening (torchvision's adjust_sharpness, factor 0.3 .. 2) and Gaussian noise (sigma up
    to noise_sigma grey levels).

    No horizontal flip: laterality matters on a chest film (the heart sits on the patient's left).
    Random draws come from the torch generator given to __call__, so resumed runs repeat them.
    """

    def __init__(
        self,
        degrees: float = 7.0,
        translate: float = 0.06,
        scale: tuple[float, float] = (0.93, 1.07),
        contrast: float = 0.15,
        acquisition: bool = False,
        gamma_range: float = 1.4,
        sharpness: tuple[float, float] = (0.3, 2.0),
        noise_sigma: float = 6.0,
    ):
        self.degrees, self.translate, self.scale, self.contrast = degrees, translate, scale, contrast
        self.acquisition, self.gamma_range, self.sharpness, self.noise_sigma = (
            acquisition,
            gamma_range,
            sharpness,
            noise_sigma,
        )

    def _acquisition(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One (1, H, W) uint8 image as another scanner might have written it; draws come after the geometric
        ones, so runs without acquisition repeat their earlier random stream."""
        u = torch.rand(4, generator=generator)
        gamma = float(self.gamma_range ** (u[0] * 2 - 1))
        image = F.adjust_gamma(image, gamma)
        image = F.adjust_sharpness(image, float(self.sharpness[0] + u[1] * (self.sharpness[1] - self.sharpness[0])))
        sigma = float(u[2]) * self.noise_sigma
        noise = torch.randn(image.shape, generator=generator) * sigma
        return (image.float() + noise).round().clamp(0, 255).to(torch.uint8)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator, masks: torch.Tensor | None = None):
        """The augmented batch; with uint8 masks (N, S, S) of any side S, also the masks moved by the same draws."""

        out = torch.empty_like(batch)
        moved_masks = None if masks is None else torch.empty_like(masks)
        size = batch.shape[-1]
        for i, image in enumerate(batch):
            u = torch.rand(5, generator=generator)
            angle = float((u[0] * 2 - 1) * self.degrees)
            shift = [
                int(round(float((u[1] * 2 - 1) * self.translate * size))),
                int(round(float((u[2] * 2 - 1) * self.translate * size))),
            ]
            scale = float(self.scale[0] + u[3] * (self.scale[1] - self.scale[0]))
            moved = F.affine(image.unsqueeze(0), angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0])
            factor = float(1 + (u[4] * 2 - 1) * self.contrast)
            adjusted = F.adjust_contrast(moved, factor)
            out[i] = (self._acquisition(adjusted, generator) if self.acquisition else adjusted)[0]
            if masks is not None:
                side = masks.shape[-1]
                mask_shift = [int(round(float((u[k] * 2 - 1) * self.translate * side))) for k in (1, 2)]
                moved_masks[i] = F.affine(
                    masks[i].unsqueeze(0), angle=angle, translate=mask_shift, scale=scale, shear=[0.0, 0.0]
                )[0]
        return out if masks is None else (out, moved_masks)
