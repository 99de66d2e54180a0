"""Shading and relighting of normal maps: second-order spherical harmonics and Lambertian light.

Normals follow hffne_lib.conventions (B x 3 x H x W, camera axes x right, y up, z to camera).
SH coefficients are ordered (l, m) = (0,0), (1,-1), (1,0), (1,1), (2,-2), (2,-1), (2,0), (2,1),
(2,2) over the real orthonormal basis, i.e. the functions 1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2.
"""
from __future__ import annotations

import math

import torch

from .conventions import normalize, shade_lambertian

#: Normalisation constants of the nine real SH basis functions (Ramamoorthi & Hanrahan 2001).
SH_CONSTANTS = (0.282095, 0.488603, 0.488603, 0.488603, 1.092548, 1.092548, 0.315392, 1.092548, 0.546274)

#: Clamped-cosine (Lambertian) convolution weights per band l = 0, 1, 2, expanded to 9 terms.
LAMBERT_BAND_WEIGHTS = (math.pi,) + (2.0 * math.pi / 3.0,) * 3 + (math.pi / 4.0,) * 5


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The nine second-order SH functions evaluated per pixel: B x 3 x H x W -> B x 9 x H x W.

    Also accepts any ... x 3 layout through ``sh_basis_vectors``; this one is for maps.
    """
    return sh_basis_vectors(normals.movedim(1, -1)).movedim(-1, 1)


def sh_basis_vectors(directions: torch.Tensor) -> torch.Tensor:
    """SH basis of unit vectors in the last axis: ... x 3 -> ... x 9."""
    x, y, z = directions.unbind(-1)
    c = SH_CONSTANTS
    return torch.stack([torch.full_like(x, c[0]), c[1] * y, c[2] * z, c[3] * x, c[4] * x * y,
                        c[5] * y * z, c[6] * (3.0 * z * z - 1.0), c[7] * x * z, c[8] * (x * x - y * y)], dim=-1)


def sh_shading(normals: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Shading sum_i c_i Y_i(n), unclamped: normals B x 3 x H x W, coeffs B x 9 (or 9) -> B x 1 x H x W."""
    coeffs = torch.as_tensor(coeffs, dtype=normals.dtype, device=normals.device).reshape(-1, 9, 1, 1)
    return (sh_basis(normals) * coeffs).sum(dim=1, keepdim=True)


def sh_from_direction(direction: torch.Tensor, intensity: float = 1.0) -> torch.Tensor:
    """SH coefficients whose shading approximates intensity * max(0, n . l): B x 3 (or 3) -> B x 9.

    The second-order truncation of the clamped cosine (error under 0.1 of the peak, largest
    near the shadow line).
    """
    light = torch.nn.functional.normalize(torch.as_tensor(direction, dtype=torch.float32).reshape(-1, 3), dim=-1)
    weights = torch.tensor(LAMBERT_BAND_WEIGHTS, dtype=light.dtype)
    return intensity * weights * sh_basis_vectors(light)


def light_direction(azimuth_deg: float | torch.Tensor, elevation_deg: float | torch.Tensor) -> torch.Tensor:
    """Unit light direction from angles in degrees: azimuth about the vertical axis from the
    camera (0 = frontal, +90 = from the image right), elevation above the horizontal plane
    (+90 = from above). Scalars or tensors of shape S -> S x 3 (3 for scalars)."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    return torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1)


def relight(albedo: torch.Tensor, normals: torch.Tensor, light_dir: torch.Tensor,
            ambient: float = 0.0, intensity: float = 1.0) -> torch.Tensor:
    """Lambertian relighting albedo * (ambient + intensity * max(0, n . l)).

    albedo: B x C x H x W (C = 1 or 3) in [0, 1]; normals: B x 3 x H x W; light_dir: B x 3 or 3
    -> B x C x H x W (not clamped; values above 1 are over-exposed).
    """
    return albedo * (ambient + intensity * shade_lambertian(normals, light_dir))


def fit_sh(image: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor | None = None,
           ridge: float = 1e-6) -> torch.Tensor:
    """Least-squares SH coefficients of an image given its normals (constant albedo absorbed).

    image: B x 1 x H x W; normals: B x 3 x H x W; mask: B x 1 x H x W (bool or 0/1, default all)
    -> B x 9, minimising sum over the mask of (sh_shading(n, c) - image)^2 (+ ridge * |c|^2).
    """
    basis = sh_basis(normalize(normals.double())).flatten(2)             # B x 9 x P (float64: the
    target = image.double().flatten(2)                                   # hemisphere makes 1, z, z^2
    weight = torch.ones_like(target) if mask is None else mask.double().flatten(2)  # nearly collinear)
    gram = torch.einsum("bip,bjp->bij", basis * weight, basis)
    gram = gram + ridge * torch.eye(9, dtype=gram.dtype, device=gram.device)
    rhs = torch.einsum("bip,bp->bi", basis * weight, target[:, 0])
    return torch.linalg.solve(gram, rhs).to(image.dtype)
