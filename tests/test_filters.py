"""Masked Gaussian filters: constants pass through, the background does not leak in."""
from __future__ import annotations

import torch

from hffne_lib.filters import gaussian_blur, high_pass, low_pass


def test_blur_keeps_constants_and_sums():
    image = torch.full((2, 3, 20, 20), 0.7)
    assert torch.allclose(gaussian_blur(image, 2.0), image, atol=1e-6)
    spike = torch.zeros(1, 1, 21, 21)
    spike[..., 10, 10] = 1.0
    blurred = gaussian_blur(spike, 1.5)
    assert abs(blurred.sum().item() - 1.0) < 1e-5 and blurred[..., 10, 10] < 0.2


def test_masked_filters_ignore_the_background():
    mask = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
    mask[..., 6:18, 6:18] = True
    image = torch.where(mask, torch.tensor(1.0), torch.tensor(100.0))
    assert torch.allclose(low_pass(image, mask, 2.0)[mask], torch.ones(int(mask.sum())), atol=1e-5)
    assert high_pass(image, mask, 2.0).abs().max() < 1e-4
