"""A procedural face: a flattened ellipsoid patch with Gaussian features, no files needed.

The surface is a grid over UV = [0, 1]^2 laid out as the Surrey Face Model's texture (u along
the image columns, v down the rows, eyes near v = 0.37, mouth near v = 0.71). Each feature
(nose ridge and tip, nostril wings, brow ridge, eye sockets and lids, cheekbones, lips, chin,
temples ...) is a Gaussian bump in UV displacing the surface along the ellipsoid normal; an
identity draws head radii, jaw taper and every feature's position, size and height.
Units: mm, about the size of the SFM mean face.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .mesh import FaceShape, Mesh

#: (name, u offset from the midline (mirrored when > 0), v, sigma_u, sigma_v, height mm).
FEATURES = (
    ("forehead", 0.0, 0.12, 0.20, 0.10, 4.0),
    ("glabella", 0.0, 0.30, 0.05, 0.04, 3.0),
    ("brow_ridge", 0.16, 0.28, 0.08, 0.03, 5.0),
    ("temple", 0.38, 0.30, 0.06, 0.08, -4.0),
    ("eye_socket", 0.165, 0.37, 0.06, 0.04, -10.0),
    ("eyeball", 0.165, 0.375, 0.045, 0.022, 5.0),
    ("nose_ridge", 0.0, 0.44, 0.03, 0.09, 14.0),
    ("nose_tip", 0.0, 0.545, 0.035, 0.03, 10.0),
    ("nose_wing", 0.055, 0.585, 0.025, 0.022, 6.0),
    ("subnasal", 0.0, 0.615, 0.03, 0.012, -3.0),
    ("cheekbone", 0.24, 0.50, 0.07, 0.06, 6.0),
    ("cheek_hollow", 0.26, 0.68, 0.06, 0.06, -4.0),
    ("philtrum", 0.0, 0.65, 0.012, 0.02, -1.0),
    ("upper_lip", 0.0, 0.69, 0.075, 0.018, 5.0),
    ("mouth_line", 0.0, 0.713, 0.085, 0.005, -3.0),
    ("lower_lip", 0.0, 0.74, 0.065, 0.02, 5.0),
    ("labiomental", 0.0, 0.80, 0.06, 0.02, -3.0),
    ("chin", 0.0, 0.88, 0.07, 0.05, 7.0),
)

#: Expression offsets (blend shapes at weight 1) as extra features, laid out as FEATURES.
EXPRESSION_FEATURES = {
    "smile": (("cheek_raise", 0.20, 0.60, 0.06, 0.05, 4.0), ("mouth_corner", 0.10, 0.70, 0.02, 0.02, -2.5)),
    "brow_raise": (("brow_lift", 0.16, 0.24, 0.10, 0.03, 3.0), ("lid_open", 0.165, 0.35, 0.05, 0.02, -2.0)),
}
EXPRESSIONS = tuple(EXPRESSION_FEATURES)


def procedural_face(rng: np.random.Generator, resolution: int = 96) -> FaceShape:
    """A random identity on a resolution x resolution UV grid (before trimming to the face
    outline): rng -> FaceShape with vertices in mm and LANDMARKS in UV."""
    jitter = _place(FEATURES, rng)
    u, v = np.meshgrid(np.linspace(0, 1, resolution), np.linspace(0, 1, resolution))
    taper = np.where(v > 0.5, 1.0 - rng.uniform(0.15, 0.3) * ((v - 0.5) / 0.5) ** 2, 1.0)
    inside = ((u - 0.5) / (0.47 * taper)) ** 2 + ((v - 0.5) / 0.48) ** 2 <= 1.0
    base, direction = _ellipsoid(u, v, radii=rng.uniform([68, 95, 85], [80, 110, 100]), taper=taper)
    height = sum(_bump(u, v, f) for f in jitter)
    vertices = base + height[..., None] * direction
    expressions = np.stack([sum(_bump(u, v, f) for f in _place(EXPRESSION_FEATURES[name]))[..., None] * direction
                            for name in EXPRESSIONS])
    faces, keep = _grid_faces(inside)
    uvs = np.stack([u, v], -1).reshape(-1, 2)[keep]
    mesh = Mesh(torch.tensor(vertices.reshape(-1, 3)[keep], dtype=torch.float32), faces,
                torch.tensor(uvs, dtype=torch.float32))
    exprs = torch.tensor(expressions.reshape(len(EXPRESSIONS), -1, 3)[:, keep], dtype=torch.float32)
    return FaceShape(mesh, exprs, _landmarks(jitter))


def _place(features, rng: np.random.Generator | None = None) -> list[tuple]:
    """Features as (name, centre u, v, sigma u, v, height), mirrored ones expanded to two.

    With an rng, an identity's variation: positions +-0.01, sizes x0.85-1.15, heights x0.7-1.3,
    and a slight left-right asymmetry."""
    out = []
    for name, du, cv, su, sv, amp in features:
        if rng is not None:
            du, cv = du + rng.uniform(-0.01, 0.01) * (du > 0), cv + rng.uniform(-0.01, 0.01)
            su, sv, amp = su * rng.uniform(0.85, 1.15), sv * rng.uniform(0.85, 1.15), amp * rng.uniform(0.7, 1.3)
        for side in ((-1, 1) if du > 0 else (0,)):
            asym = rng.uniform(0.98, 1.02) if rng is not None else 1.0
            out.append((name, 0.5 + side * du * asym, cv, su, sv, amp))
    return out


def _bump(u: np.ndarray, v: np.ndarray, feature: tuple) -> np.ndarray:
    """One placed Gaussian feature evaluated on the UV grid (mm)."""
    _, cu, cv, su, sv, amp = feature
    return amp * np.exp(-0.5 * (((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def _ellipsoid(u, v, radii, taper, flatness: float = 0.7):
    """Base surface: azimuth +-80 deg along u, elevation +-62 deg along v, front flattened by
    raising the cosines to ``flatness``; returns points and unit outward directions, grid x 3."""
    phi, theta = (u - 0.5) * math.radians(160), (0.5 - v) * math.radians(124)
    rx, ry, rz = radii
    x = rx * np.sin(phi) * np.cos(theta) * taper
    y = ry * np.sin(theta)
    z = rz * np.cos(phi) ** flatness * np.cos(theta) ** flatness
    points = np.stack([x, y, z], -1)
    direction = np.stack([x / rx ** 2, y / ry ** 2, z / rz ** 2], -1)
    return points, direction / np.linalg.norm(direction, axis=-1, keepdims=True)


def _grid_faces(inside: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Triangles of the grid cells whose corners are all inside, counter-clockwise seen from
    the front (u right, v down), re-indexed to the kept vertices: -> (F x 3, kept vertex ids)."""
    n = inside.shape[0]
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1))
    a, b, c, d = j * n + i, (j + 1) * n + i, j * n + i + 1, (j + 1) * n + i + 1
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([c, b, d], -1).reshape(-1, 3)])
    tris = tris[inside.reshape(-1)[tris].all(1)]
    keep = np.unique(tris)
    remap = np.full(n * n, -1)
    remap[keep] = np.arange(len(keep))
    return torch.tensor(remap[tris], dtype=torch.long), keep


def _landmarks(features: list[tuple]) -> dict[str, tuple[float, float]]:
    """LANDMARKS in UV from this identity's feature centres (subject's right = smaller u)."""
    centre = {(name, cu < 0.5): (cu, cv) for name, cu, cv, *_ in features}
    marks = {}
    for side, right in (("r", True), ("l", False)):
        (eu, ev), out = centre[("eyeball", right)], -1 if right else 1
        marks[f"eye_outer_{side}"] = (eu + out * 0.06, ev - 0.01)
        marks[f"eye_inner_{side}"] = (eu - out * 0.055, ev)
        bu, bv = centre[("brow_ridge", right)]
        marks[f"brow_{side}"] = (bu, bv - 0.005)
        wu, wv = centre[("nose_wing", right)]
        marks[f"nostril_{side}"] = (wu, wv + 0.015)
        mu, mv = centre[("mouth_line", False)]
        marks[f"mouth_{side}"] = (mu + out * 0.085, mv)
    marks["nose_tip"] = centre[("nose_tip", False)]
    marks["chin"] = (0.5, centre[("chin", False)][1] + 0.05)
    return marks
