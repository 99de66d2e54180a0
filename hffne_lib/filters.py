"""Masked Gaussian low/high-pass filters, shared by the shading loss and the fine-band metric.

Shapes: images B x C x H x W (any C), masks B x 1 x H x W (bool or 0/1); sigma in pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (reflect padding): B x C x H x W -> B x C x H x W; sigma in px (> 0)."""
    if not sigma > 0:
        raise ValueError(f"a Gaussian blur needs sigma > 0 px, got {sigma}")
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def low_pass(images: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mask-normalised Gaussian blur: the background does not leak in. B x C x H x W."""
    weight = mask.to(images.dtype)
    return gaussian_blur(images * weight, sigma) / gaussian_blur(weight, sigma).clamp_min(1e-3)


def high_pass(images: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Image minus its masked low-pass, zero outside the mask: B x C x H x W."""
    return (images - low_pass(images, mask, sigma)) * mask.to(images.dtype)


def band_pass(images: torch.Tensor, mask: torch.Tensor, sigma: float, presmooth: float = 0.0) -> torch.Tensor:
    """``high_pass`` at ``sigma`` of the image blurred first by ``presmooth`` px (0: not blurred):
    the band between the two scales, without the pixel-level noise above it. B x C x H x W."""
    if presmooth > 0:
        images = low_pass(images, mask, presmooth)
    return high_pass(images, mask, sigma)
