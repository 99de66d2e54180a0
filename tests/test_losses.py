"""Eq. 10's reconstruction term, faithful and low-frequency only, and the shading term's robust score
(both beyond the paper)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hffne_lib.losses import high_frequency_shading_loss, reconstruction_loss


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
