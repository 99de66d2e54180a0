"""BEYOND THE PAPER: relit, turned and warped lab images for the coarse stage
(``ExperimentConfig.coarse_relight``, ``coarse_relight_yaw``, ``coarse_warp``).

The coarse network sees lab images only: grey faces under a few fixed lights on a dark backdrop.
In the wild the lights and backgrounds differ, and the exemplar's error there is several times
its lab error. Relighting re-renders a lab face from its ground-truth normals and albedo
(photometric stereo gives both on Photoface) under a random directional light with ambient, over
a random smooth background. The light ranges are the synthetic wild renderer's directional ones
(hffne_lib.data.synthetic), so gains measured on the synthetic wild split are an upper bound for
real photos.

Lab faces are frontal, upright and centred; faces in photos are not. Turning (with relighting)
integrates the true normals into heights, turns the surface about the vertical axis (yaw) and
projects it again, so the relit image shows a face seen from the side, with its turned normals as
the target. Warping mirrors, rolls, zooms and shifts a lab image, its normals and its mask together
(a similarity of the image plane; the normals turn with it, ``conventions.transform_normals``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .conventions import normalize, surface_slopes, transform_normals
from .rendering import light_direction, relight

AZIMUTH_DEG = (-70.0, 70.0)
ELEVATION_DEG = (-30.0, 60.0)
AMBIENT = (0.05, 0.4)
STRENGTH = (0.6, 1.0)
#: The largest yaw ``coarse_relight_yaw`` accepts: beyond it the z-buffer shows mostly the side.
MAX_YAW_DEG = 60.0
#: Depth (pixels) within which turned samples count as the same visible surface and are averaged.
FRONT_DEPTH = 1.0
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
                      fraction: float, max_yaw_deg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace about ``fraction`` of the images by relit ones (global torch RNG, so resumable).
    With ``max_yaw_deg`` > 0 each of them is first turned out of the image plane by a yaw drawn
    from [-max_yaw_deg, max_yaw_deg] (``turn_faces``), its normals and mask with it.

    gray, mask: B x 1 x H x W; normal: B x 3 x H x W (ground truth); albedo: B x 1 x H x W in [0, 1].
    Returns gray B x 1 x H x W in [0, 1], normal and mask (changed only where turned).
    """
    check_fraction(fraction, "coarse_relight")
    check_yaw(max_yaw_deg)
    count, device = gray.shape[0], gray.device
    chosen = (torch.rand(count, device=device) < fraction).view(-1, 1, 1, 1)
    if max_yaw_deg:
        turned = turn_faces(normal, albedo, mask, _uniform((-max_yaw_deg, max_yaw_deg), count, device))
        normal, albedo, mask = (torch.where(chosen, new, old) for new, old in zip(turned, (normal, albedo, mask)))
    direction = light_direction(_uniform(AZIMUTH_DEG, count, device), _uniform(ELEVATION_DEG, count, device))
    face = relight(albedo, normal, direction.to(device), _uniform(AMBIENT, count, device).view(-1, 1, 1, 1),
                   _uniform(STRENGTH, count, device).view(-1, 1, 1, 1))
    relit = torch.where(mask.bool(), face, smooth_backgrounds(count, gray.shape[-1], device)).clamp(0, 1)
    return torch.where(chosen, relit, gray), normal, mask


def check_yaw(max_yaw_deg: float) -> None:
    """One-line ValueError unless ``max_yaw_deg`` (``coarse_relight_yaw``) lies in [0, MAX_YAW_DEG]."""
    if not 0.0 <= max_yaw_deg <= MAX_YAW_DEG:
        raise ValueError(f"coarse_relight_yaw is a largest yaw in degrees, in [0, {MAX_YAW_DEG:g}], got {max_yaw_deg}")


def heights_from_normals(normal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The height field whose slopes best match the normals' inside the mask (zero outside), by
    Frankot and Chellappa's projection onto integrable surfaces (periodic, through the FFT).

    normal B x 3 x H x W, mask B x 1 x H x W -> B x 1 x H x W heights in pixel units, z towards the
    camera, mean zero inside the mask.
    """
    slopes = surface_slopes(normal.float()) * mask.float()
    d_col, d_row = slopes[:, 0], -slopes[:, 1]                      # y is up, rows grow down
    h, w = d_col.shape[-2:]
    wx = 2 * math.pi * torch.fft.fftfreq(w, device=normal.device).view(1, 1, w)
    wy = 2 * math.pi * torch.fft.fftfreq(h, device=normal.device).view(1, h, 1)
    denominator = (wx ** 2 + wy ** 2).clone()
    denominator[..., 0, 0] = 1.0
    spectrum = (-1j * wx * torch.fft.fft2(d_col) - 1j * wy * torch.fft.fft2(d_row)) / denominator
    spectrum[..., 0, 0] = 0.0
    heights = torch.fft.ifft2(spectrum).real[:, None]
    inside = mask.bool()
    mean = (heights * inside).sum((2, 3), keepdim=True) / inside.sum((2, 3), keepdim=True).clamp_min(1)
    return (heights - mean).to(normal.dtype)


def turn_faces(normal: torch.Tensor, albedo: torch.Tensor, mask: torch.Tensor, yaw_deg: torch.Tensor,
               supersample: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn each face about the vertical image axis by ``yaw_deg`` (positive: its front moves to
    the image right) and project it again (orthographic), hidden parts removed by a z-buffer.

    The surface is ``heights_from_normals``, sampled ``supersample`` times more finely than the
    pixels so that the turned samples leave no holes; each pixel averages the samples that land on
    it within FRONT_DEPTH of the nearest (at yaw 0 on lab faces: 0.63 degrees from the input, 0.57
    in the fine band, against 1.46 and 0.92 when it keeps one sample).
    normal B x 3 x H x W unit, albedo B x C x H x W, mask B x 1 x H x W, yaw_deg B. Returns the
    turned normals (zero outside the new mask), albedo and mask (in its own dtype); parts that were
    out of sight before the turn stay outside it.
    """
    count, _, h, w = normal.shape
    up = lambda images: F.interpolate(images, scale_factor=supersample, mode="bilinear", align_corners=False)
    normal_s, albedo_s, height = up(normal), up(albedo), up(heights_from_normals(normal, mask))
    inside = up(mask.to(normal.dtype)) > 0.5
    hs, ws = normal_s.shape[-2:]
    centres = lambda n: (torch.arange(n, device=normal.device, dtype=normal.dtype) + 0.5) / supersample - 0.5
    x = (centres(ws) - (w - 1) / 2).view(1, 1, 1, ws)                  # pixels right of the centre
    row = centres(hs).round().long().view(1, 1, hs, 1)
    angle = torch.deg2rad(yaw_deg.to(normal.dtype)).view(-1, 1, 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    col = (cos * x + sin * height + (w - 1) / 2).round().long()
    depth = -sin * x + cos * height
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    yaw = torch.cat([torch.cat([cos, zero, sin], -1), torch.cat([zero, one, zero], -1),
                     torch.cat([-sin, zero, cos], -1)], -2)[:, 0]          # B x 3 x 3, about y
    turned = transform_normals(normal_s, yaw)
    visible = (inside & (col >= 0) & (col < w) & (turned[:, 2:] > 0)).flatten()
    batch = torch.arange(count, device=normal.device).view(-1, 1, 1, 1)
    target = ((batch * h + row) * w + col).flatten()[visible]
    depth = depth.flatten()[visible]
    nearest = torch.full((count * h * w,), -math.inf, dtype=depth.dtype, device=depth.device)
    nearest = nearest.scatter_reduce(0, target, depth, "amax")
    front = depth >= nearest[target] - FRONT_DEPTH   # the samples of the surface seen at each pixel
    seen = lambda images: images.permute(0, 2, 3, 1).reshape(-1, images.shape[1])[visible][front]   # S x C
    pixel_sum = lambda images: torch.zeros(count * h * w, images.shape[1], dtype=images.dtype,
                                           device=images.device).index_add_(0, target[front], seen(images))
    hits = pixel_sum(torch.ones_like(height))
    unflat = lambda values: values.view(count, h, w, -1).permute(0, 3, 1, 2)
    new_mask = unflat((hits > 0).to(normal.dtype))
    return (normalize(unflat(pixel_sum(turned))) * new_mask, unflat(pixel_sum(albedo_s) / hits.clamp_min(1)),
            new_mask.to(mask.dtype))


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
    turn_3d = F.pad(turn, (0, 1, 0, 1)) + torch.diag(torch.tensor([0.0, 0.0, 1.0], dtype=turn.dtype, device=turn.device))
    turned = transform_normals(normalize(sample(normal, "zeros")), turn_3d) * inside
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
