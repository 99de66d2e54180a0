"""Eq. 10's reconstruction term, faithful and low-frequency only, and the terms beyond the paper: the
shading term's robust score and presmoothing, and the integrability (curl) term."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hffne_lib.config import get_config
from hffne_lib.losses import curl, high_frequency_shading_loss, integrability_loss, reconstruction_loss


def _ridged(size=32, amplitude=0.3):
    """Frontal normals with 2-px ridges in x: a pure fine band."""
    n = torch.zeros(1, 3, size, size)
    n[:, 2] = 1.0
    n[:, 0] = amplitude * torch.where(torch.arange(size) % 4 < 2, 1.0, -1.0)
    return F.normalize(n, dim=1)


def test_faithful_term_is_smooth_l1():
    a, b = _ridged(), _ridged(amplitude=0.0)
    assert torch.equal(reconstruction_loss(a, b), F.smooth_l1_loss(a, b))
    assert reconstruction_loss(a, a) == 0


def test_low_frequency_term_ignores_the_fine_band_but_not_the_shape():
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 4:28, 4:28] = True
    smooth = _ridged(amplitude=0.0)
    ridged = torch.where(mask, _ridged(), smooth)            # detail inside the mask only
    tilted = torch.where(mask, F.normalize(smooth + torch.tensor([0.0, 0.3, 0.0]).view(1, 3, 1, 1), dim=1), smooth)
    assert reconstruction_loss(ridged, smooth) > 1e-3
    assert reconstruction_loss(ridged, smooth, mask, sigma=2.0) < 0.05 * reconstruction_loss(ridged, smooth)
    assert reconstruction_loss(tilted, smooth, mask, sigma=2.0) > 0.5 * reconstruction_loss(tilted, smooth)


def test_robust_shading_score_lets_an_albedo_edge_go_and_keeps_pulling_on_small_detail():
    """A dark stripe of albedo (x 0.3) and a faint ridge in the image; the normals are flat.
    L1 pulls the normals at the stripe as hard as at the ridge; the robust score barely there."""
    size = 32
    flat = torch.zeros(1, 3, size, size)
    flat[:, 2] = 1.0
    light = torch.tensor([0.5, 0.0, 0.8]).view(1, 3, 1, 1)
    shading = (_ridged(size, amplitude=0.05) * light).sum(1, keepdim=True)
    albedo = torch.ones(1, 1, size, size)
    albedo[..., 20:24] = 0.3
    gray = albedo * shading
    mask = torch.ones(1, 1, size, size)
    stripe, ridge = (slice(None), slice(None), slice(None), slice(21, 23)), (slice(None), slice(None), slice(None), slice(4, 12))
    pulls = {}
    for scale in (0.0, 0.01):
        normals = flat.clone().requires_grad_(True)
        high_frequency_shading_loss(normals, gray, flat, mask, sigma=2.0, robust_scale=scale).backward()
        pulls[scale] = (normals.grad[stripe].abs().mean() / normals.grad[ridge].abs().mean()).item()
    assert pulls[0.0] > 0.5 and pulls[0.01] < 0.1 * pulls[0.0]


def test_presmoothed_shading_term_lets_pixel_noise_go_and_still_sees_the_detail():
    """The image: the shading of true normals with a ridge of period 8 px, plus a checkerboard of
    pixel noise (+-0.02). At the true normals the plain term still scores the noise; presmoothed by
    0.75 px it scores almost nothing. Flat normals (no detail) it scores nearly as before."""
    size = 48
    cols = torch.arange(float(size)).expand(size, size)
    true = F.normalize(torch.stack([0.3 * torch.sin(2 * math.pi * cols / 8), torch.zeros_like(cols),
                                    torch.ones_like(cols)])[None], dim=1)
    flat = F.normalize(torch.stack([torch.zeros_like(cols), torch.zeros_like(cols), torch.ones_like(cols)])[None], dim=1)
    light = torch.tensor([0.5, 0.0, 0.8]).view(1, 3, 1, 1)
    checker = torch.where((cols + cols.T) % 2 == 0, 1.0, -1.0)[None, None]
    gray = 0.2 + (true * light).sum(1, keepdim=True) + 0.02 * checker
    mask = torch.ones(1, 1, size, size)
    score = lambda normals, presmooth: high_frequency_shading_loss(normals, gray, normals, mask, 2.0, 0.0, presmooth).item()
    assert score(true, 0.0) > 0.01 and score(true, 0.75) < 0.1 * score(true, 0.0)
    assert score(flat, 0.75) > 0.6 * score(flat, 0.0) and score(flat, 0.75) > 5 * score(true, 0.75)
    with pytest.raises(ValueError, match="shading_presmooth is a blur in px in \\[0, shading_sigma=2.0\\), got 2.0"):
        get_config("ci", shading_presmooth=2.0)


def _normals_from_slopes(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Unit normals (-p, -q, 1) / |.| from slope maps H x W -> 1 x 3 x H x W."""
    return F.normalize(torch.stack([-p, -q, torch.ones_like(p)])[None], dim=1)


def test_a_height_field_has_no_curl_and_a_swirl_has_its_known_curl():
    """Slopes taken from a height field on the pixel grid (y up: rows grow down) have curl 0 up to
    rounding; the swirl (p, q) = (-k y, k x) has dp/dy - dq/dx = -2k at every cell."""
    rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    height = 3.0 * torch.sin(cols / 5.0) * torch.cos(rows / 7.0) + 0.02 * cols * rows
    p = torch.diff(height, dim=1, append=height[:, -1:])          # dz/dx: along columns
    q = -torch.diff(height, dim=0, append=height[-1:, :])         # dz/dy = -dz/drow
    surface = _normals_from_slopes(p, q)
    assert curl(surface)[..., :-1, :-1].abs().max() < 1e-5
    k = 0.01
    swirl = _normals_from_slopes(k * rows, k * cols)               # p = -k y, since y = -row
    assert torch.allclose(curl(swirl), torch.full((1, 1, 23, 23), -2 * k), atol=1e-5)


def test_integrability_loss_counts_only_cells_inside_the_mask():
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    k = 0.02
    swirl = _normals_from_slopes(k * rows, k * cols)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., 2:10, 3:12] = True
    assert abs(integrability_loss(swirl, mask).item() - 2 * k) < 1e-5
    garbage = swirl.clone()
    garbage[..., ~mask[0, 0]] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1)   # silhouette-like, outside
    assert abs(integrability_loss(garbage, mask).item() - 2 * k) < 1e-5
    assert integrability_loss(garbage, torch.ones_like(mask)) > 10 * k
