"""Fine facial detail and skin albedo, painted in a face's UV space.

Detail is a height field (mm, along the surface normal) made of forehead wrinkles, crow's feet,
frown lines, nasolabial folds, brow hairs, beard stubble and skin pores; bump mapping turns its
UV gradient into normal perturbations. The detail mask marks where salient detail lies (all of
the above but the pores, which cover the whole skin). Albedo: a skin tone with slow variation,
redder lips, dark eyes, brows and beard in a hair colour.

Everything is placed in a face frame built from the UV landmarks: origin between the eyes, x
towards the subject's left eye, y down, unit = outer eye-corner distance ("iod", ~92 mm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Ranges an identity's detail is drawn from. "holdout" (used for the scans split) has denser,
#: wavier forehead wrinkles, more crow's feet and under-eye lines, never seen in training.
DETAIL_STYLES = {
    "train": dict(forehead_spacing=(0.07, 0.10), wiggle=0.008, crows_feet=(3, 5), under_eye=0),
    "holdout": dict(forehead_spacing=(0.045, 0.065), wiggle=0.02, crows_feet=(5, 8), under_eye=2),
}

#: Millimetres per face unit (the mean outer eye-corner distance of the Surrey Face Model).
MM_PER_UNIT = 92.0

#: How far (in sigmas) a texture blur reaches past the border, mirrored.
BLUR_REACH = 4.0

SKIN_LIGHT, SKIN_DARK = np.array([0.90, 0.72, 0.62]), np.array([0.34, 0.21, 0.14])
HAIR_COLOURS = np.array([[0.06, 0.05, 0.04], [0.20, 0.13, 0.08], [0.45, 0.32, 0.18], [0.55, 0.50, 0.45]])


@dataclass
class FaceTexture:
    """UV maps of one identity, T x T each: gradient 2 (dh/du, dh/dv, mm per UV unit), detail
    mask 1 (0/1), albedo 3 (RGB in [0, 1])."""

    gradient: torch.Tensor
    detail_mask: torch.Tensor
    albedo: torch.Tensor

    def sample(self, uv: torch.Tensor) -> dict[str, torch.Tensor]:
        """Bilinear look-up at per-pixel UVs 2 x H x W -> gradient 2, detail_mask 1 (bool), albedo 3."""
        maps = torch.cat([self.gradient, self.detail_mask, self.albedo])[None]
        grid = (uv.permute(1, 2, 0)[None] * 2.0 - 1.0).to(maps.dtype)
        values = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        return {"gradient": values[:2], "detail_mask": values[2:3] > 0.5, "albedo": values[3:]}


def make_face_texture(landmarks_uv: dict[str, tuple[float, float]], rng: np.random.Generator, size: int,
                      style: str = "train", beard_probability: float = 0.3, detail_scale: float = 1.0) -> FaceTexture:
    """One identity's detail and albedo, T = size x size texels (use twice the render size).

    landmarks_uv: LANDMARKS in UV; style: a key of DETAIL_STYLES; detail_scale multiplies
    every detail height (0 gives a smooth face with the same albedo)."""
    frame = _FaceFrame(landmarks_uv, size)
    ranges = DETAIL_STYLES[style]
    age = rng.uniform(0.2, 1.0)
    groups = [_forehead(frame, rng, age, ranges), _frown(frame, rng, age)]
    for side in ("r", "l"):
        groups += [_crows_feet(frame, rng, age, ranges, side), _nasolabial(frame, rng, age, side),
                   _under_eye(frame, rng, age, ranges["under_eye"], side)]
    hair_colour = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    brows = frame.draw(_brow_hairs(frame, rng, "r")) + frame.draw(_brow_hairs(frame, rng, "l"))
    beard = _stubble(frame, rng) if rng.random() < beard_probability else np.zeros_like(brows)
    features = sum(frame.draw(g) for g in groups) + 0.15 * np.clip(brows, 0, 1.5) + 0.12 * beard
    pores = 0.03 * _noise(rng, size, 0.4 / frame.mm_per_texel) - 0.03 * _noise(rng, size, 1.2 / frame.mm_per_texel)
    height = _blur(detail_scale * (features + pores), 1.2)
    mask = (_blur(np.abs(features), 2.0) > 0.02) | (_blur(beard, 4.0) > 0.05)
    albedo = _albedo(frame, rng, np.clip(brows, 0, 1), beard, hair_colour)
    dv, du = np.gradient(height * size)
    return FaceTexture(torch.tensor(np.stack([du, dv]), dtype=torch.float32),
                       torch.tensor(mask[None], dtype=torch.float32), torch.tensor(albedo, dtype=torch.float32))


class _FaceFrame:
    """Face-unit coordinates (fx, fy) of every texel, landmarks in face units, and a renderer
    of line features (polylines of grooves or ridges) into T x T height maps."""

    def __init__(self, landmarks_uv: dict[str, tuple[float, float]], size: int):
        uv = {k: np.asarray(v, dtype=np.float64) for k, v in landmarks_uv.items()}
        self.origin = (uv["eye_outer_r"] + uv["eye_outer_l"] + uv["eye_inner_r"] + uv["eye_inner_l"]) / 4
        axis = uv["eye_outer_l"] - uv["eye_outer_r"]
        self.iod = float(np.linalg.norm(axis))
        self.ex = axis / self.iod
        self.ey = np.array([-self.ex[1], self.ex[0]])
        self.size = size
        self.mm_per_texel = MM_PER_UNIT / (self.iod * size)
        centres = (np.arange(size) + 0.5) / size
        gu, gv = np.meshgrid(centres, centres)
        self.fx, self.fy = self.to_face(np.stack([gu, gv], -1))
        self.marks = {k: np.stack(self.to_face(v)) for k, v in uv.items()}

    def to_face(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Texture coordinates (... x 2) -> face coordinates (x, y), in inter-ocular distances from the eyes' centre."""
        d = (uv - self.origin) / self.iod
        return d @ self.ex, d @ self.ey

    def to_texel(self, face_xy: np.ndarray) -> np.ndarray:
        """Face units ... x 2 -> texel (column, row) ... x 2."""
        uv = self.origin + self.iod * (face_xy[..., :1] * self.ex + face_xy[..., 1:] * self.ey)
        return uv * self.size - 0.5

    def draw(self, lines: list[tuple[np.ndarray, float, np.ndarray]]) -> np.ndarray:
        """Sum of height * exp(-(d / width)^2) over line segments, d = distance to the segment,
        each evaluated on the texels of its own box (3 widths around it).

        lines: (points N x 2 in face units, width in face units, heights N-1 in mm)."""
        if not lines:
            return np.zeros((self.size, self.size))
        a = np.concatenate([p[:-1] for p, _, _ in lines])
        b = np.concatenate([p[1:] for p, _, _ in lines])
        width = np.concatenate([np.full(len(p) - 1, w) for p, w, _ in lines])
        height = np.concatenate([h for _, _, h in lines])
        reach = 3.0 * width[:, None]
        lo, hi = np.minimum(a, b) - reach, np.maximum(a, b) + reach
        corners = self.to_texel(np.stack([lo, hi, np.stack([lo[:, 0], hi[:, 1]], 1), np.stack([hi[:, 0], lo[:, 1]], 1)]))
        first = np.clip(np.floor(corners.min(0)).astype(int), 0, self.size)
        last = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, self.size)
        extent = np.maximum(last - first, 0)                              # S x 2 (columns, rows)
        counts = extent.prod(1)
        owner = np.repeat(np.arange(len(a)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        col = first[owner, 0] + local % np.maximum(extent[owner, 0], 1)
        row = first[owner, 1] + local // np.maximum(extent[owner, 0], 1)
        p = np.stack([self.fx[row, col], self.fy[row, col]], 1)
        ab = b[owner] - a[owner]
        t = np.clip(((p - a[owner]) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
        dist2 = ((p - a[owner] - t[:, None] * ab) ** 2).sum(1)
        values = height[owner] * np.exp(-dist2 / width[owner] ** 2)
        return np.bincount(row * self.size + col, values, self.size * self.size).reshape(self.size, self.size)


def _line(points: np.ndarray, width: float, depth: float) -> tuple[np.ndarray, float, np.ndarray]:
    """A groove (depth > 0 digs in) along a polyline, fading towards both ends."""
    t = (np.arange(len(points) - 1) + 0.5) / (len(points) - 1)
    return points, width, -depth * np.sin(np.pi * t) ** 0.5


def _forehead(frame: _FaceFrame, rng, age: float, ranges: dict) -> list:
    """3-6 roughly horizontal furrows above the brows, bent with the brow line."""
    brow_y = min(frame.marks["brow_r"][1], frame.marks["brow_l"][1])
    spacing = rng.uniform(*ranges["forehead_spacing"])
    lines = []
    for k in range(rng.integers(3, 7)):
        half = rng.uniform(0.2, 0.5)
        x = np.linspace(-half, half, 24) + rng.uniform(-0.08, 0.08)
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(8, 20)
        y = brow_y - 0.12 - k * spacing + 0.25 * x ** 2 + ranges["wiggle"] * np.sin(freq * x + phase)
        lines.append(_line(np.stack([x, y], 1), 0.012, rng.uniform(0.15, 0.45) * age))
    return lines


def _outwards(side: str) -> float:
    """Image direction away from the face's midline on the subject's ``side`` ("r" is image left)."""
    return -1.0 if side == "r" else 1.0


def _crows_feet(frame: _FaceFrame, rng, age: float, ranges: dict, side: str) -> list:
    """Rays fanning out from one outer eye corner."""
    lines, out = [], _outwards(side)
    corner = frame.marks[f"eye_outer_{side}"]
    for angle in np.deg2rad(rng.uniform(-40, 40, rng.integers(*ranges["crows_feet"]))):
        direction = np.array([out * np.cos(angle), np.sin(angle)])
        points = corner + 0.04 * direction + np.linspace(0, rng.uniform(0.08, 0.16), 8)[:, None] * direction
        lines.append(_line(points, 0.008, rng.uniform(0.1, 0.3) * age))
    return lines


def _frown(frame: _FaceFrame, rng, age: float) -> list:
    """Two vertical frown lines between the brows (for 60% of identities)."""
    if rng.random() > 0.6:
        return []
    brow_y = (frame.marks["brow_r"][1] + frame.marks["brow_l"][1]) / 2
    lines = []
    for side in (-1.0, 1.0):
        x = side * rng.uniform(0.03, 0.07)
        points = np.stack([np.full(8, x) + np.linspace(0, side * 0.02, 8), np.linspace(brow_y + 0.05, brow_y - 0.12, 8)], 1)
        lines.append(_line(points, 0.01, rng.uniform(0.15, 0.4) * age))
    return lines


def _nasolabial(frame: _FaceFrame, rng, age: float, side: str) -> list:
    """A fold from beside one nostril to beyond the mouth corner, bowed outwards."""
    out = _outwards(side)
    start = frame.marks[f"nostril_{side}"] + np.array([out * 0.06, -0.03])
    end = frame.marks[f"mouth_{side}"] + np.array([out * 0.05, 0.06])
    control = (start + end) / 2 + np.array([out * rng.uniform(0.03, 0.07), 0.0])
    points = _bezier(start, control, end, np.linspace(0, 1, 12)[:, None])
    return [_line(points, rng.uniform(0.02, 0.035), rng.uniform(0.4, 1.2) * (0.3 + age))]


def _bezier(start: np.ndarray, control: np.ndarray, end: np.ndarray, t):
    """Quadratic Bezier curve at parameter(s) t (scalar or N x 1) -> 2 or N x 2."""
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t ** 2 * end


def _under_eye(frame: _FaceFrame, rng, age: float, count: int, side: str) -> list:
    """``count`` arcs under one eye (the holdout style has them)."""
    inner, outer = frame.marks[f"eye_inner_{side}"], frame.marks[f"eye_outer_{side}"]
    t = np.linspace(0, 1, 10)[:, None]
    return [_line(inner + t * (outer - inner) + np.array([0, 0.05 + 0.03 * k]) + np.sin(np.pi * t) * [0, 0.02],
                  0.008, rng.uniform(0.1, 0.25) * age) for k in range(count)]


def _brow_hairs(frame: _FaceFrame, rng, side: str) -> list:
    """Short raised strokes along one brow (height 1, scaled by the caller), pointing outwards."""
    lines, out = [], _outwards(side)
    middle = frame.marks[f"brow_{side}"]
    inner = np.array([frame.marks[f"eye_inner_{side}"][0] - out * 0.02, middle[1] + 0.03])
    outer = np.array([frame.marks[f"eye_outer_{side}"][0] + out * 0.04, middle[1] + 0.05])
    thickness = rng.uniform(0.04, 0.07)
    for _ in range(int(rng.integers(80, 160))):
        t = rng.uniform(0, 1)
        base = _bezier(inner, middle, outer, t) + [0, rng.uniform(-0.5, 0.5) * thickness * (1.2 - 0.6 * t)]
        angle = np.deg2rad(70 * (1 - t) ** 2 + rng.uniform(-15, 15))
        tip = base + rng.uniform(0.02, 0.04) * np.array([out * np.cos(angle), -np.sin(angle)])
        lines.append((np.stack([base, tip]), 0.005, np.ones(1)))
    return lines


def _stubble(frame: _FaceFrame, rng) -> np.ndarray:
    """Beard density in [0, 1]: sparse noise dots over the upper lip, chin and jaw, not the lips."""
    nostril_y = (frame.marks["nostril_r"][1] + frame.marks["nostril_l"][1]) / 2
    mouth = (frame.marks["mouth_r"] + frame.marks["mouth_l"]) / 2
    region = _smoothstep(frame.fy, nostril_y + 0.03, nostril_y + 0.08) * (np.abs(frame.fx) < 0.75)
    lips = _ellipse(frame, mouth + [0, 0.01], 0.6 * abs(frame.marks["mouth_l"][0] - frame.marks["mouth_r"][0]), 0.07)
    dots = _noise(rng, frame.size, 0.25 / frame.mm_per_texel) > rng.uniform(0.6, 1.4)
    return _blur(dots * region * (1 - lips), 0.7) * rng.uniform(0.6, 1.0)


def _albedo(frame: _FaceFrame, rng, brows: np.ndarray, beard: np.ndarray, hair: np.ndarray) -> np.ndarray:
    """RGB albedo 3 x T x T: skin tone, slow blotches, red cheeks and lips, dark eyes, hair."""
    tone = SKIN_LIGHT + rng.uniform(0, 1) * (SKIN_DARK - SKIN_LIGHT) + rng.normal(0, 0.02, 3)
    skin = tone[:, None, None] * (1 + 0.05 * _noise(rng, frame.size, 8.0 / frame.mm_per_texel)[None])
    for side in ("r", "l"):
        cheek = _ellipse(frame, frame.marks[f"nostril_{side}"] + [_outwards(side) * 0.12, -0.05], 0.12, 0.1)
        skin = skin * (1 + 0.08 * cheek * np.array([1.0, -0.5, -0.5])[:, None, None])
        eye = _ellipse(frame, (frame.marks[f"eye_inner_{side}"] + frame.marks[f"eye_outer_{side}"]) / 2,
                       0.45 * abs(frame.marks[f"eye_outer_{side}"][0] - frame.marks[f"eye_inner_{side}"][0]), 0.03)
        skin = skin * (1 - 0.6 * eye)
    mouth = (frame.marks["mouth_r"] + frame.marks["mouth_l"]) / 2
    lips = _ellipse(frame, mouth + [0, 0.01], 0.55 * abs(frame.marks["mouth_l"][0] - frame.marks["mouth_r"][0]), 0.06)
    skin = skin * (1 - lips * np.array([0.15, 0.4, 0.35])[:, None, None] * rng.uniform(0.6, 1.2))
    hair_weight = np.clip(0.85 * brows + 0.7 * beard, 0, 1)[None]
    return np.clip(skin * (1 - hair_weight) + hair[:, None, None] * hair_weight, 0.0, 1.0)


def _ellipse(frame: _FaceFrame, centre: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Soft-edged ellipse in face units, 1 inside, 0 outside: T x T."""
    rx, ry = max(rx, 1e-3), max(ry, 1e-3)           # landmarks may coincide on odd meshes
    r = np.sqrt(((frame.fx - centre[0]) / rx) ** 2 + ((frame.fy - centre[1]) / ry) ** 2)
    return 1.0 - _smoothstep(r, 0.7, 1.0)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _noise(rng, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation, size x size; sigma in texels."""
    field = _blur(rng.standard_normal((size, size)), sigma)
    return field / max(field.std(), 1e-12)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a square texture (edges mirrored, not wrapped: what lies at one border of
    UV space is not beside the other), sigma in texels."""
    pad = int(np.ceil(BLUR_REACH * sigma))
    padded = np.pad(image, pad, mode="symmetric")
    f = np.fft.fftfreq(padded.shape[0])
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.fft.ifft2(np.fft.fft2(padded) * transfer).real[pad:pad + image.shape[0], pad:pad + image.shape[1]]
