"""Spherical harmonics, Lambertian relighting and light directions (hffne_lib.rendering)."""
from __future__ import annotations

import math

import pytest
import torch

from hffne_lib import rendering as r
from hffne_lib.conventions import normalize, shade_lambertian


def _sphere(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Normals of a unit sphere seen from the front (1 x 3 x S x S) and its mask."""
    t = (torch.arange(size) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(-t, t, indexing="ij")
    z2 = 1 - x ** 2 - y ** 2
    mask = (z2 > 0)[None, None]
    n = torch.stack([x, y, z2.clamp_min(0).sqrt()])[None] * mask
    return n, mask


def test_sh_basis_is_orthonormal_on_the_sphere():
    d = normalize(torch.randn(200000, 3, generator=torch.Generator().manual_seed(0))[..., None, None])
    basis = r.sh_basis(d)[..., 0, 0]                                      # N x 9
    gram = basis.T @ basis * (4 * math.pi / len(basis))
    assert torch.allclose(gram, torch.eye(9), atol=0.02)


def test_sh_basis_shape_and_constant_term():
    n, _ = _sphere(16)
    basis = r.sh_basis(n.repeat(2, 1, 1, 1))
    assert basis.shape == (2, 9, 16, 16)
    assert torch.allclose(basis[:, 0], torch.full_like(basis[:, 0], 0.282095))
    # band 1 is (y, z, x) scaled: at the frontal normal only the z term is on
    frontal = r.sh_basis(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))[0, :4, 0, 0]
    assert torch.allclose(frontal, torch.tensor([0.282095, 0.0, 0.488603, 0.0]), atol=1e-6)


def test_sh_from_direction_approximates_lambertian():
    n, mask = _sphere()
    light = r.light_direction(30.0, 20.0)
    approx = r.sh_shading(n, r.sh_from_direction(light))
    exact = shade_lambertian(n, light)
    diff = (approx - exact).abs()[mask]
    assert diff.max() < 0.12 and diff.mean() < 0.04


def test_sh_fit_round_trip():
    n, mask = _sphere()
    coeffs = torch.tensor([[0.9, 0.2, 0.5, -0.3, 0.05, -0.1, 0.08, 0.02, -0.06],
                           [0.5, -0.4, 0.3, 0.2, 0.0, 0.1, -0.05, 0.1, 0.03]])
    n2, mask2 = n.repeat(2, 1, 1, 1), mask.repeat(2, 1, 1, 1)
    image = r.sh_shading(n2, coeffs) * mask2
    image = torch.where(mask2, image, torch.rand_like(image))              # junk outside is ignored
    assert torch.allclose(r.fit_sh(image, n2, mask2), coeffs, atol=1e-4)


def test_light_direction_axes():
    assert torch.allclose(r.light_direction(0.0, 0.0), torch.tensor([0.0, 0.0, 1.0]), atol=1e-7)
    assert torch.allclose(r.light_direction(90.0, 0.0), torch.tensor([1.0, 0.0, 0.0]), atol=1e-7)
    assert torch.allclose(r.light_direction(0.0, 90.0), torch.tensor([0.0, 1.0, 0.0]), atol=1e-7)
    many = r.light_direction(torch.tensor([-40.0, 10.0, 70.0]), torch.tensor([5.0, -20.0, 45.0]))
    assert many.shape == (3, 3) and torch.allclose(many.norm(dim=1), torch.ones(3))


def test_relight_is_albedo_times_ambient_plus_lambert():
    n, mask = _sphere(32)
    albedo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    light = r.light_direction(-45.0, 30.0)
    out = r.relight(albedo, n, light, ambient=0.2, intensity=0.7)
    expected = albedo * (0.2 + 0.7 * shade_lambertian(n, light))
    assert out.shape == (1, 3, 32, 32) and torch.allclose(out, expected)
    # a light from the right brightens the right half of the sphere
    right = r.relight(torch.ones(1, 1, 32, 32), n, r.light_direction(80.0, 0.0))
    assert right[..., 16:][mask[..., 16:]].mean() > right[..., :16][mask[..., :16]].mean() + 0.3


@pytest.mark.parametrize("ridge", [0.0, 1e-6])
def test_fit_sh_recovers_a_directional_light_up_to_truncation(ridge):
    n, mask = _sphere()
    light = r.light_direction(20.0, 35.0)
    fitted = r.fit_sh(r.sh_shading(n, r.sh_from_direction(light)), n, mask, ridge=ridge)
    band1 = fitted[0, [3, 1, 2]]                                          # (x, y, z) order
    assert torch.allclose(normalize(band1.view(1, 3, 1, 1)).flatten(), light, atol=1e-3)
