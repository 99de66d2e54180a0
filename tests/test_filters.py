"""Masked Gaussian filters: constants pass through, the background does not leak in, a band-pass
keeps its band."""
from __future__ import annotations

import math

import pytest
import torch

from hffne_lib.filters import band_pass, gaussian_blur, high_pass, low_pass


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


def test_band_pass_keeps_the_detail_band_and_drops_pixel_noise():
    """A sine of period 8 px (detail) and a checkerboard (pixel noise, period 2 px): the high-pass
    at 2 px keeps both; presmoothed by 0.75 px it keeps most of the sine and almost none of the noise."""
    rows, cols = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    detail = torch.sin(2 * math.pi * cols / 8)[None, None]
    noise = torch.where((rows + cols) % 2 == 0, 1.0, -1.0)[None, None]
    mask = torch.ones(1, 1, 48, 48)
    energy = lambda images: images[..., 12:36, 12:36].pow(2).mean().item()
    assert torch.equal(band_pass(detail, mask, 2.0), high_pass(detail, mask, 2.0))
    assert energy(high_pass(noise, mask, 2.0)) > 0.9 and energy(high_pass(detail, mask, 2.0)) > 0.2
    assert energy(band_pass(noise, mask, 2.0, 0.75)) < 0.05 * energy(high_pass(noise, mask, 2.0))
    assert energy(band_pass(detail, mask, 2.0, 0.75)) > 0.6 * energy(high_pass(detail, mask, 2.0))


@pytest.mark.parametrize("sigma", [0.0, -1.0])
def test_a_blur_without_width_is_refused_rather_than_nan(sigma):
    with pytest.raises(ValueError, match=f"sigma > 0 px, got {sigma}"):
        gaussian_blur(torch.ones(1, 1, 8, 8), sigma)
