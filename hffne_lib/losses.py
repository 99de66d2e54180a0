"""Training losses. Defaults follow PAPER.md (eq. 10) and the authors' release; all weights settable.

Shapes: normals B x 3 x H x W unit vectors; images B x 3 x H x W in [0, 1]; masks B x 1 x H x W.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vgg import VGG19Features

#: The release divides the mean relu1_2 L1 by 256 * 256 before adding it (PAPER.md, eq. 10).
PERCEPTUAL_RELEASE_SCALE = 1.0 / (256 * 256)


def reconstruction_loss(refined: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between refined normals and the coarse exemplar (eq. 10's first term)."""
    return F.smooth_l1_loss(refined, exemplar)


class PerceptualLoss(nn.Module):
    """Mean L1 between VGG19 relu1_2 of the RGB image and of the normals as an image (n+1)/2,
    times ``scale`` (default: the release's 1 / (256 * 256)). Returns a scalar."""

    def __init__(self, vgg: VGG19Features, scale: float = PERCEPTUAL_RELEASE_SCALE, layer: str = "relu1_2"):
        super().__init__()
        self.vgg = vgg.requires_grad_(False)
        self.scale = scale
        self.layer = layer

    def forward(self, normals: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        target = self.vgg(rgb, (self.layer,))[self.layer]
        features = self.vgg(normals / 2 + 0.5, (self.layer,))[self.layer]
        return F.l1_loss(features, target) * self.scale


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of B x 1 x H x W values over mask pixels (all pixels when mask is None)."""
    if mask is None:
        return values.mean()
    weight = mask.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def supervised_normal_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                           kind: str = "cosine") -> torch.Tensor:
    """Coarse-stage loss against ground truth: 1 - cos(pred, target) or L1, within the mask."""
    if kind == "cosine":
        per_pixel = 1.0 - (pred * target).sum(dim=1, keepdim=True)
    elif kind == "l1":
        per_pixel = (pred - target).abs().mean(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown supervised loss {kind!r}; use 'cosine' or 'l1'")
    return masked_mean(per_pixel, mask)


def gan_loss(logits: torch.Tensor, is_real: bool) -> torch.Tensor:
    """pix2pix's (vanilla, BCE-with-logits) GAN loss against an all-real or all-fake target."""
    target = torch.ones_like(logits) if is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
