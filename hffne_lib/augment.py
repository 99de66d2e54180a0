"""BEYOND THE PAPER: relit lab images for the coarse stage (``ExperimentConfig.coarse_relight``).

The coarse network sees lab images only: grey faces under a few fixed lights on a dark backdrop.
In the wild the lights and backgrounds differ, and the exemplar's error there is several times
its lab error. Relighting re-renders a lab face from its ground-truth normals and albedo
(photometric stereo gives both on Photoface) under a random directional light with ambient, over
a random smooth background. The light ranges are the synthetic wild renderer's directional ones
(hffne_lib.data.synthetic), so gains measured on the synthetic wild split are an upper bound for
real photos.
"""
from __future__ import annotations

import torch

from .rendering import light_direction, relight

AZIMUTH_DEG = (-70.0, 70.0)
ELEVATION_DEG = (-30.0, 60.0)
AMBIENT = (0.05, 0.4)
STRENGTH = (0.6, 1.0)


def _uniform(low_high: tuple[float, float], count: int, device: torch.device) -> torch.Tensor:
    low, high = low_high
    return low + (high - low) * torch.rand(count, device=device)


def smooth_backgrounds(count: int, size: int, device: torch.device) -> torch.Tensor:
    """Grey linear ramps between two random levels at a random angle: count x 1 x size x size."""
    a, b, angle = torch.rand(count, device=device), torch.rand(count, device=device), torch.rand(count, device=device)
    ramp = torch.linspace(-1, 1, size, device=device)
    angle = angle * 2 * torch.pi
    t = (torch.cos(angle).view(-1, 1, 1) * ramp.view(1, 1, -1) + torch.sin(angle).view(-1, 1, 1) * ramp.view(1, -1, 1))
    return (a.view(-1, 1, 1) + (b - a).view(-1, 1, 1) * (t * 0.5 + 0.5))[:, None]


def check_relight_fraction(fraction: float) -> None:
    """One-line ValueError unless ``fraction`` (``coarse_relight``) lies in [0, 1]."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"coarse_relight is a fraction of images in [0, 1], got {fraction}")


def relight_lab_batch(gray: torch.Tensor, normal: torch.Tensor, albedo: torch.Tensor, mask: torch.Tensor,
                      fraction: float) -> torch.Tensor:
    """Replace about ``fraction`` of the images by relit ones (global torch RNG, so resumable).

    gray, mask: B x 1 x H x W; normal: B x 3 x H x W (ground truth); albedo: B x 1 x H x W in [0, 1].
    Returns B x 1 x H x W in [0, 1]; the normals (the targets) are unchanged.
    """
    check_relight_fraction(fraction)
    count, device = gray.shape[0], gray.device
    chosen = (torch.rand(count, device=device) < fraction).view(-1, 1, 1, 1)
    direction = light_direction(_uniform(AZIMUTH_DEG, count, device), _uniform(ELEVATION_DEG, count, device))
    face = relight(albedo, normal, direction.to(device), _uniform(AMBIENT, count, device).view(-1, 1, 1, 1),
                   _uniform(STRENGTH, count, device).view(-1, 1, 1, 1))
    relit = torch.where(mask.bool(), face, smooth_backgrounds(count, gray.shape[-1], device)).clamp(0, 1)
    return torch.where(chosen, relit, gray)
