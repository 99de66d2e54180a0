"""The normal-map conventions: encoding round trips, flips, masks, shading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hffne_lib import conventions as cv


def _random_unit(shape=(2, 3, 5, 7), seed=0):
    n = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    n[:, 2] = n[:, 2].abs()  # visible: facing the camera
    return cv.normalize(n)


def test_frontal_normal_encodes_to_light_blue():
    n = torch.tensor(cv.FRONTAL).view(1, 3, 1, 1)
    assert cv.encode_rgb(n).flatten().tolist() == [0.5, 0.5, 1.0]
    assert cv.to_uint8_image(n[0])[0, 0].tolist() == [128, 128, 255]


def test_rgb_round_trip_float_and_uint8():
    n = _random_unit()
    assert torch.allclose(cv.decode_rgb(cv.encode_rgb(n)), n, atol=1e-6)
    back = cv.from_uint8_image(cv.to_uint8_image(n[0]))
    assert torch.rad2deg(torch.acos((back * n[0]).sum(0).clamp(-1, 1))).max() < 0.5  # 8-bit quantisation
    sixteen = (cv.encode_rgb(n[:1])[0].permute(1, 2, 0).numpy() * 65535).round().astype(np.uint16)
    assert torch.allclose(cv.from_uint8_image(sixteen), n[0], atol=1e-4)


def test_masks_and_shading():
    n = _random_unit()
    mask = torch.zeros(2, 1, 5, 7)
    mask[:, :, 1:3] = 1
    masked = cv.apply_mask(n, mask)
    assert torch.equal(masked.norm(dim=1, keepdim=True) > 0, mask.bool())
    frontal = cv.normalize(torch.tensor(cv.FRONTAL).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone())
    assert torch.allclose(cv.shade_lambertian(frontal, torch.tensor([0.0, 0.0, 2.0])), torch.ones(1, 1, 2, 2))
    sixty = torch.tensor([0.0, np.sin(np.pi / 3), np.cos(np.pi / 3)])  # 60 degrees from the normal
    assert torch.allclose(cv.shade_lambertian(frontal, sixty), torch.full((1, 1, 2, 2), 0.5), atol=1e-6)
    assert cv.shade_lambertian(frontal, torch.tensor([0.0, 0.0, -1.0])).max() == 0  # light from behind


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="3 x H x W"):
        cv.to_uint8_image(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="H x W x 3"):
        cv.from_uint8_image(np.zeros((2, 2), np.uint8))


def test_normalize_matches_torch_and_keeps_zero_vectors_differentiable():
    torch.manual_seed(0)
    vectors = torch.randn(2, 3, 16, 16, dtype=torch.float64) * torch.rand(2, 1, 16, 16, dtype=torch.float64)
    vectors[:, :, :4] = 0.0                                              # background: no normal
    vectors.requires_grad_(True)
    ours, reference = cv.normalize(vectors), torch.nn.functional.normalize(vectors, dim=1, eps=cv.NORMAL_EPS)
    assert torch.allclose(ours, reference, atol=1e-12) and (ours[:, :, :4] == 0).all()
    weights = torch.randn_like(ours)
    grad_ours, = torch.autograd.grad((ours * weights).sum(), vectors)
    grad_reference, = torch.autograd.grad((reference * weights).sum(), vectors)
    assert torch.isfinite(grad_ours).all() and torch.allclose(grad_ours, grad_reference)
    assert torch.allclose(cv.normalize(vectors.detach().float()).norm(dim=1)[:, 4:], torch.ones(2, 12, 16))


def test_surface_slopes_of_a_tilted_plane_and_their_clamp_at_the_silhouette():
    """z = 0.3 x - 0.2 y has normal (-0.3, 0.2, 1) / |.|; y points up, so a plane rising towards
    the top of the image has dz/dy > 0. A normal lying in the image plane has its slope capped."""
    n = cv.normalize(torch.tensor([-0.3, 0.2, 1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4))
    assert torch.allclose(cv.surface_slopes(n), torch.tensor([0.3, -0.2]).view(1, 2, 1, 1).expand(1, 2, 4, 4))
    edge = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert cv.surface_slopes(edge, min_z=0.2)[0, :, 0, 0].tolist() == [-5.0, 0.0]
