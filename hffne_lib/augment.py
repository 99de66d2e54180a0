"""BEYOND THE PAPER: relit and warped lab images for the coarse stage (``ExperimentConfig.coarse_relight``,
``ExperimentConfig.coarse_warp``).

The coarse network sees lab images only: grey faces under a few fixed lights on a dark backdrop.
In the wild the lights and backgrounds differ, and the exemplar's error there is several times
its lab error. Relighting re-renders a lab face from its ground-truth normals and albedo
(photometric stereo gives both on Photoface) under a random directional light with ambient, over
a random smooth background. The light ranges are the synthetic wild renderer's directional ones
(hffne_lib.data.synthetic), so gains measured on the synthetic wild split are an upper bound for
real photos.

Warping mirrors, rolls, zooms and shifts a lab image, its normals and its mask together (a
similarity of the image plane; the normals turn with it, ``conventions.transform_in_plane``).
Lab faces are frontal, upright and centred; faces in photos are not. A 2-D warp cannot turn a
face out of the image plane (yaw, pitch), which 3-D data would need.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .conventions import normalize, transform_in_plane
from .rendering import light_direction, relight

AZIMUTH_DEG = (-70.0, 70.0)
ELEVATION_DEG = (-30.0, 60.0)
AMBIENT = (0.05, 0.4)
STRENGTH = (0.6, 1.0)
#: Warp ranges: in-plane roll (degrees, counter-clockwise), zoom (> 1 enlarges the face), shift
#: (fraction of the image size, each axis); half the warped images are mirrored.
ROLL_DEG = (-15.0, 15.0)
ZOOM = (0.9, 1.1)
SHIFT = (-0.05, 0.05)


def _uniform(low_high: tuple[float, float], count: int, device: torch.device) -> torch.Tensor:
    low, high = low_high
    return low + (high - low) * torch.rand(count, device=device)


def smooth_backgrounds(count: int, size: int, device: torch.device) -> torch.Tensor:
    """Grey linear ramps between two random levels at a random angle: count x 1 x size x size."""
    a, b, angle = torch.rand(count, device=device), torch.rand(count, device=device), torch.rand(count, device=device)
    ramp = torch.linspace(-1, 1, size, device=device)
    angle = angle * 2 * torch.pi
    t = (torch.cos(angle).view(-1, 1, 1) * ramp.view(1, 1, -1) + torch.sin(angle).view(-1, 1, 1) * ramp.view(1, -1, 1))
    return (a.view(-1, 1, 1) + (b - a).view(-1, 1, 1) * (t * 0.5 + 0.5))[:, None]


def check_fraction(fraction: float, name: str) -> None:
    """One-line ValueError unless ``fraction`` (the setting ``name``) lies in [0, 1]."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name} is a fraction of images in [0, 1], got {fraction}")


def relight_lab_batch(gray: torch.Tensor, normal: torch.Tensor, albedo: torch.Tensor, mask: torch.Tensor,
                      fraction: float) -> torch.Tensor:
    """Replace about ``fraction`` of the images by relit ones (global torch RNG, so resumable).

    gray, mask: B x 1 x H x W; normal: B x 3 x H x W (ground truth); albedo: B x 1 x H x W in [0, 1].
    Returns B x 1 x H x W in [0, 1]; the normals (the targets) are unchanged.
    """
    check_fraction(fraction, "coarse_relight")
    count, device = gray.shape[0], gray.device
    chosen = (torch.rand(count, device=device) < fraction).view(-1, 1, 1, 1)
    direction = light_direction(_uniform(AZIMUTH_DEG, count, device), _uniform(ELEVATION_DEG, count, device))
    face = relight(albedo, normal, direction.to(device), _uniform(AMBIENT, count, device).view(-1, 1, 1, 1),
                   _uniform(STRENGTH, count, device).view(-1, 1, 1, 1))
    relit = torch.where(mask.bool(), face, smooth_backgrounds(count, gray.shape[-1], device)).clamp(0, 1)
    return torch.where(chosen, relit, gray)


def warp_faces(gray: torch.Tensor, normal: torch.Tensor, mask: torch.Tensor, roll_deg: torch.Tensor,
               mirror: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror (left-right, where ``mirror``), then roll (counter-clockwise as seen, degrees), zoom
    and shift (fraction of the image size, x right, y up) each image, its normals and its mask.

    gray B x 1 x H x W (border pixels extend it), normal B x 3 x H x W unit, mask B x 1 x H x W;
    roll_deg, zoom: B; mirror: B bool; shift: B x 2. Returns the three, warped, with the normals
    turned with the image, unit inside the new mask and zero outside; the mask in its own dtype.
    """
    angle = torch.deg2rad(roll_deg.to(normal.dtype))
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)   # B x 2 x 2
    reflection = torch.diag_embed(torch.stack([1.0 - 2.0 * mirror.to(normal.dtype), torch.ones_like(cos)], -1))
    turn = rotation @ reflection                                         # content map, y up
    flip_y = torch.diag(torch.tensor([1.0, -1.0], dtype=normal.dtype, device=normal.device))
    # affine_grid maps output pixels to input ones in (x right, y down) coordinates spanning [-1, 1]
    inverse = flip_y @ turn.transpose(1, 2) @ flip_y / zoom.to(normal.dtype).view(-1, 1, 1)
    offset = 2.0 * shift.to(normal.dtype) * torch.tensor([1.0, -1.0], dtype=normal.dtype, device=normal.device)
    theta = torch.cat([inverse, -(inverse @ offset[:, :, None])], dim=2)
    grid = F.affine_grid(theta, list(gray.shape), align_corners=False)
    sample = lambda images, padding: F.grid_sample(images, grid, mode="bilinear", padding_mode=padding,
                                                  align_corners=False)
    inside = sample(mask.to(normal.dtype), "zeros") > 0.5
    turned = transform_in_plane(normalize(sample(normal, "zeros")), turn) * inside
    return sample(gray, "border"), turned, inside.to(mask.dtype)


def warp_lab_batch(gray: torch.Tensor, normal: torch.Tensor, mask: torch.Tensor, fraction: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp about ``fraction`` of the images (``warp_faces`` with ROLL_DEG, ZOOM, SHIFT, mirrored
    at even odds; global torch RNG, so resumable); the others pass unchanged. Shapes as
    ``warp_faces``; returns gray, normal, mask."""
    check_fraction(fraction, "coarse_warp")
    count, device = gray.shape[0], gray.device
    chosen = (torch.rand(count, device=device) < fraction).view(-1, 1, 1, 1)
    warped = warp_faces(gray, normal, mask, _uniform(ROLL_DEG, count, device), torch.rand(count, device=device) < 0.5,
                        _uniform(ZOOM, count, device), _uniform(SHIFT, 2 * count, device).view(count, 2))
    return tuple(torch.where(chosen, new, old) for new, old in zip(warped, (gray, normal, mask)))
