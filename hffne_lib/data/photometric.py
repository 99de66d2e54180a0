"""Least-squares photometric stereo: normals and albedo from K >= 3 images under known lights.

Per pixel, g = albedo * n solves L g = I in the least-squares sense (L: K x 3 unit light
directions in camera axes, I: the K intensities). Measurements darker than
``shadow_threshold`` (attached or cast shadows) are left out where at least three remain, the
usual four-source treatment (Photoface has four lights).
"""
from __future__ import annotations

import numpy as np
import torch

#: Intensity below which a measurement counts as shadowed (images in [0, 1]).
SHADOW_THRESHOLD = 0.02


def photometric_stereo(images: torch.Tensor | np.ndarray, lights: torch.Tensor | np.ndarray,
                       mask: torch.Tensor | np.ndarray | None = None,
                       shadow_threshold: float = SHADOW_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """images K x H x W (linear, in [0, 1]); lights K x 3 (any length, normalised here);
    mask H x W or 1 x H x W (default all) -> (normals 3 x H x W unit, zero outside the mask and
    where nothing was lit; albedo 1 x H x W)."""
    images = torch.as_tensor(images).float()
    lights = torch.nn.functional.normalize(torch.as_tensor(lights, dtype=torch.float64).reshape(-1, 3), dim=1)
    k, h, w = images.shape
    if lights.shape[0] != k or k < 3:
        raise ValueError(f"photometric stereo needs K >= 3 images and K lights, got {k} images, {lights.shape[0]} lights")
    intensity = images.reshape(k, -1).double()                          # K x P
    lit = intensity > shadow_threshold
    weight = torch.where(lit.sum(0, keepdim=True) >= 3, lit.double(), torch.ones_like(intensity))
    gram = torch.einsum("kp,ki,kj->pij", weight, lights, lights)        # P x 3 x 3
    rhs = torch.einsum("kp,ki,kp->pi", weight, lights, intensity)       # P x 3
    g = torch.linalg.solve(gram + 1e-9 * torch.eye(3, dtype=gram.dtype), rhs)
    albedo = g.norm(dim=1)
    valid = albedo > 1e-6
    if mask is not None:
        valid &= torch.as_tensor(mask).reshape(-1).bool()
    normals = torch.where(valid[:, None], g / albedo.clamp_min(1e-12)[:, None], torch.zeros_like(g))
    albedo = albedo * valid
    return normals.T.reshape(3, h, w).float(), albedo.reshape(1, h, w).float()
