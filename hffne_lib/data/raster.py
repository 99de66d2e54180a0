"""A vectorised z-buffer triangle rasteriser and the orthographic face camera built on it.

Screen space: columns x rows in pixels, pixel (r, c) has its centre at (c + 0.5, r + 0.5);
depth grows towards the camera (the camera axes of hffne_lib.conventions: z to camera), so
the nearest surface is the one with the largest depth. One pass serves every mesh the project
renders: the procedural face, the Surrey Face Model and scans.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, ParamSpec, TypeVar

import torch

from .mesh import Mesh, vertex_normals, vertex_tangents

P = ParamSpec("P")
R = TypeVar("R")

#: Most (triangle, pixel) candidate pairs processed at once (about 150 B each: ~600 MB at most;
#: a single triangle's box is never split).
MAX_PAIRS = 4_000_000


def single_threaded(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with one torch thread. The generator's tensors are small: extra OpenMP
    threads only spin, and on a busy 2-core machine they made it ten times slower."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


@dataclass
class Fragments:
    """Per pixel: face_index H x W long (-1 = background) and barycentrics H x W x 3."""

    face_index: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """Covered pixels, H x W bool."""
        return self.face_index >= 0


def rasterize(screen: torch.Tensor, faces: torch.Tensor, height: int, width: int,
              cull_backfaces: bool = True) -> Fragments:
    """Nearest triangle per pixel centre.

    screen: V x 3 (column, row, depth) in pixels, depth larger = nearer; faces: F x 3 long.
    Front faces are counter-clockwise as the camera sees them (x right, y up; a negative signed
    area in column-row coordinates); ``cull_backfaces`` drops the others.
    """
    tri = screen[faces]                                                  # F x 3 x 3
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    area = _cross(b - a, c - a)
    keep = area.abs() > 1e-12
    if cull_backfaces:
        keep &= area < 0
    lo = torch.floor(tri[..., :2].amin(1) - 0.5).clamp_min(0).long()
    hi = torch.ceil(tri[..., :2].amax(1) - 0.5).long()
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1]))
    span = (hi - lo + 1).clamp_min(0)
    keep &= (span > 0).all(1)
    ids = torch.nonzero(keep).squeeze(1)
    zbuf = torch.full((height * width,), -torch.inf)
    face_index = torch.full((height * width,), -1, dtype=torch.long)
    bary = torch.zeros(height * width, 3)
    counts = span[ids].prod(1)
    ends = torch.cumsum(counts, 0)
    start = 0
    while start < len(ids):
        stop = int(torch.searchsorted(ends, ends[start] - counts[start] + MAX_PAIRS, right=True).clamp_min(start + 1))
        _raster_chunk(tri, area, lo, span, ids[start:stop], counts[start:stop], width, zbuf, face_index, bary)
        start = stop
    return Fragments(face_index.view(height, width), bary.view(height, width, 3))


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _raster_chunk(tri, area, lo, span, ids, counts, width, zbuf, face_index, bary) -> None:
    """Enumerate every pixel of each triangle's bounding box, keep the inside ones, z-test."""
    owner = torch.repeat_interleave(ids, counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    local = torch.arange(len(owner)) - first
    w = span[owner, 0]
    px = lo[owner, 0] + local % w
    py = lo[owner, 1] + local // w
    p = torch.stack([px, py], 1).float() + 0.5
    a, b, c = tri[owner, 0], tri[owner, 1], tri[owner, 2]
    inv = 1.0 / area[owner]
    w0 = _cross(c[:, :2] - b[:, :2], p - b[:, :2]) * inv
    w1 = _cross(a[:, :2] - c[:, :2], p - c[:, :2]) * inv
    w2 = 1.0 - w0 - w1
    inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
    weights = torch.stack([w0, w1, w2], 1)[inside]
    owner, pixel = owner[inside], (py * width + px)[inside]
    depth = (weights * torch.stack([a[inside, 2], b[inside, 2], c[inside, 2]], 1)).sum(1)
    zbuf.scatter_reduce_(0, pixel, depth, reduce="amax")
    win = depth >= zbuf[pixel]
    face_index[pixel[win]] = owner[win]
    bary[pixel[win]] = weights[win]


def interpolate(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of per-vertex attributes: V x C -> C x H x W (zeros outside)."""
    return interpolate_corners(fragments, attributes[faces])


def interpolate_corners(fragments: Fragments, corners: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of per-face-corner attributes (an OBJ's texture coordinates, which
    may differ between the faces that share a vertex): F x 3 x C -> C x H x W (zeros outside)."""
    values = corners[fragments.face_index.clamp_min(0)]                  # H x W x 3 x C
    values = (values * fragments.bary[..., None]).sum(2) * fragments.mask[..., None]
    return values.permute(2, 0, 1)


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> torch.Tensor:
    """Head rotation R = Rz(roll) Rx(pitch) Ry(yaw) in camera axes, 3 x 3. Positive yaw turns
    the face towards the image right, positive pitch tilts it up, positive roll counter-clockwise."""
    y, p, r = (torch.deg2rad(torch.tensor(float(v))) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = torch.tensor([[torch.cos(y), 0, torch.sin(y)], [0, 1, 0], [-torch.sin(y), 0, torch.cos(y)]])
    rx = torch.tensor([[1, 0, 0], [0, torch.cos(p), torch.sin(p)], [0, -torch.sin(p), torch.cos(p)]])
    rz = torch.tensor([[torch.cos(r), -torch.sin(r), 0], [torch.sin(r), torch.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(mesh: Mesh, rotation: torch.Tensor, size: int, margin: float = 1.2, zoom: float = 1.0,
            shift: tuple[float, float] = (0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthographic face-crop camera: the mesh rotated about its box centre (camera-space
    vertices V x 3, mm), framed so that its projected box enlarged ``margin`` times fills the
    size x size image (``zoom`` > 1 comes closer, ``shift`` moves it by fractions of the image,
    x right, y down) -> (screen V x 3 as rasterize takes it, camera-space vertices)."""
    centre = (mesh.vertices.amax(0) + mesh.vertices.amin(0)) / 2
    cam = (mesh.vertices - centre) @ rotation.T
    lo, hi = cam[:, :2].amin(0), cam[:, :2].amax(0)
    scale = zoom * size / (margin * float((hi - lo).max()))
    mid = (hi + lo) / 2
    screen = torch.stack([size / 2 + scale * (cam[:, 0] - mid[0]) + shift[0] * size,
                          size / 2 - scale * (cam[:, 1] - mid[1]) + shift[1] * size, cam[:, 2]], 1)
    return screen, cam


@dataclass
class GBuffer:
    """Camera-space surface attributes per pixel, all C x H x W and zero outside the mask.

    mask 1 (bool); normal 3 (smooth vertex normals, unit, z >= 0); uv 2 (only for meshes with
    UVs, else None); dpdu, dpdv 3 each (mm per UV unit, camera axes; None without UVs);
    depth 1 (mm, larger = nearer); fragments: the rasteriser's, to interpolate more attributes.
    """

    mask: torch.Tensor
    normal: torch.Tensor
    depth: torch.Tensor
    fragments: Fragments
    uv: torch.Tensor | None = None
    dpdu: torch.Tensor | None = None
    dpdv: torch.Tensor | None = None


@single_threaded
def render_gbuffer(mesh: Mesh, rotation: torch.Tensor, size: int, margin: float = 1.2,
                   zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0),
                   cull_backfaces: bool = True) -> GBuffer:
    """Orthographic render of a mesh to size x size through ``project`` (same arguments)."""
    screen, cam = project(mesh, rotation, size, margin, zoom, shift)
    frags = rasterize(screen, mesh.faces, size, size, cull_backfaces)
    attributes = [vertex_normals(cam, mesh.faces), cam[:, 2:]]
    if mesh.uvs is not None:
        dpdu, dpdv = vertex_tangents(mesh.vertices, mesh.faces, mesh.uvs)
        attributes += [mesh.uvs, dpdu @ rotation.T, dpdv @ rotation.T]
    values = interpolate(frags, mesh.faces, torch.cat(attributes, 1))
    mask = frags.mask[None]
    normal = values[:3].clone()
    normal[2].clamp_(min=0.0)                      # silhouette pixels: keep the surface visible
    normal = torch.nn.functional.normalize(normal, dim=0, eps=1e-12) * mask
    if mesh.uvs is None:
        return GBuffer(mask, normal, values[3:4], frags)
    return GBuffer(mask, normal, values[3:4], frags, values[4:6], values[6:9], values[9:12])
