"""The synthetic face generator: identities, scenes and renders with exact ground truth.

An identity is a face shape (procedural or Surrey Face Model) with its UV detail and albedo;
a sample poses it, applies an expression, renders it and lights it as its role asks:

* ``lab`` (Photoface's role): near-frontal grey captures under the four LAB_LIGHTS, no
  ambient light; the ground truth "normal" is least-squares photometric stereo of the four
  8-bit renders, as for real Photoface; the renderer's normals are kept as normal_exact.
* ``wild`` (FFHQ / CelebA / 300-W's role): yaw +-30, pitch +-15 deg, colour, directional plus
  ambient or second-order SH light, optional specular, random background, sensor noise.
* ``scans`` (Florence's role): as wild, with identities and detail styles never seen in
  training (texture.DETAIL_STYLES["holdout"]).

Everything is deterministic in (seed, identity, sample index).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..conventions import normalize, rgb_to_gray, shade_lambertian
from ..rendering import light_direction, sh_from_direction, sh_shading
from .mesh import FaceShape
from .photometric import photometric_stereo
from .procedural import procedural_face
from .raster import GBuffer, render_gbuffer, rotation_matrix, single_threaded
from .sfm import SurreyFaceModel
from .texture import FaceTexture, make_face_texture

ROLES = ("lab", "wild", "scans")

#: Photoface-like lights: 35 deg off the view axis, from the four diagonals (K x 3, camera axes).
LAB_LIGHTS = torch.stack([light_direction(az, el) for az, el in ((-25, 25), (25, 25), (-25, -25), (25, -25))])

#: Names of the entries of a sample's "light" vector (unused entries are zero).
LIGHT_FIELDS = ("ambient", "strength", "dir_x", "dir_y", "dir_z", "specular",
                *(f"sh_{i}" for i in range(9)), "red", "green", "blue")

#: Per role: max |yaw|, |pitch|, |roll| (deg), max expression weight, zoom range, max shift.
SCENES = {
    "lab": dict(yaw=5.0, pitch=5.0, roll=2.0, expression=0.2, zoom=(0.95, 1.05), shift=0.02),
    "wild": dict(yaw=30.0, pitch=15.0, roll=8.0, expression=0.8, zoom=(0.85, 1.1), shift=0.05),
    "scans": dict(yaw=30.0, pitch=15.0, roll=5.0, expression=0.5, zoom=(0.9, 1.05), shift=0.03),
}

#: What a random stream is for (``random_stream``'s first key): the split plan, an identity, a sample.
PLAN_STREAM, IDENTITY_STREAM, SAMPLE_STREAM = 0, 1, 2


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """The benchmark's generator for one use of ``seed``: key (PLAN_STREAM,), (IDENTITY_STREAM,
    identity) or (SAMPLE_STREAM, identity, sample). Distinct keys give independent streams (a
    plain seed list did not: [seed, 1] and [seed, 1, 0] are the same stream)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class Identity:
    """A face identity: global id, shape and UV texture (detail, detail mask, albedo)."""

    identity: int
    shape: FaceShape
    texture: FaceTexture


@single_threaded
def make_identity(identity: int, role: str, seed: int, size: int, geometry: str = "procedural",
                  sfm: SurreyFaceModel | None = None, beard_probability: float = 0.3) -> Identity:
    """Draw identity ``identity`` for a render size. geometry: "procedural", "sfm" or "mix"
    (half and half, by the identity's own draw); "sfm" and "mix" need the loaded ``sfm``."""
    if geometry not in ("procedural", "sfm", "mix"):
        raise ValueError(f"unknown geometry {geometry!r}: use procedural, sfm or mix")
    if geometry != "procedural" and sfm is None:
        raise ValueError(f"geometry {geometry!r} needs the Surrey Face Model (pass sfm_path or set HFFNE_SFM_PATH)")
    rng = random_stream(seed, IDENTITY_STREAM, identity)
    use_sfm = geometry == "sfm" or (geometry == "mix" and rng.random() < 0.5)
    shape = sfm.sample(rng) if use_sfm else procedural_face(rng, int(np.clip(size // 2, 48, 128)))
    style = "holdout" if role == "scans" else "train"
    texture = make_face_texture(shape.landmarks_uv, rng, 2 * size, style, beard_probability)
    return Identity(identity, shape, texture)


@single_threaded
def render_sample(identity: Identity, role: str, sample: int, seed: int, size: int,
                  detail: bool = True, lab_specular: float = 0.05, lab_noise: float = 0.003) -> dict:
    """One render of an identity in its role's scene, as float tensors (C x H x W):

    all roles: normal_exact 3 (unit in the mask, zero outside), normal_base 3 (the same surface
    without fine detail), mask 1 (bool), detail_mask 1 (bool), pose 3 (yaw, pitch, roll deg),
    identity (int); lab: images K x H x W (8-bit values / 255), lights K x 3, normal 3
    (photometric stereo), albedo 1 (grey); wild and scans: rgb 3, gray 1, albedo 3, shading 1
    (diffuse light per pixel), light (LIGHT_FIELDS).
    ``detail=False`` renders the same sample with a smooth surface (for checks).
    """
    if role not in SCENES:
        raise ValueError(f"unknown role {role!r}: use one of {ROLES}")
    rng = random_stream(seed, SAMPLE_STREAM, identity.identity, sample)
    scene = SCENES[role]
    pose = [rng.uniform(-scene[k], scene[k]) for k in ("yaw", "pitch", "roll")]
    weights = torch.zeros(identity.shape.expressions.shape[0])
    if rng.random() < 0.6:
        weights[rng.integers(len(weights))] = rng.uniform(0, scene["expression"])
    mesh = identity.shape.posed(weights)
    g = render_gbuffer(mesh, rotation_matrix(*pose), size, zoom=rng.uniform(*scene["zoom"]),
                       shift=tuple(rng.uniform(-scene["shift"], scene["shift"], 2)))
    tex = identity.texture.sample(g.uv)
    normal = bump_normals(g, tex["gradient"] * detail)
    out = {"normal_exact": normal, "normal_base": g.normal, "mask": g.mask,
           "detail_mask": tex["detail_mask"] & g.mask, "pose": torch.tensor(pose, dtype=torch.float32),
           "identity": identity.identity}
    albedo = tex["albedo"] * g.mask
    if role == "lab":
        out.update(_lab_capture(normal, rgb_to_gray(albedo[None])[0], g.mask, rng, lab_specular, lab_noise))
    else:
        out.update(_wild_capture(normal, albedo, g.mask, rng, size))
    return out


def bump_normals(g: GBuffer, gradient: torch.Tensor) -> torch.Tensor:
    """Bump mapping: the normal of the surface displaced by a height h along its normal,
    n' = normalize(n - grad_s h), grad_s h = [Pu Pv] G^-1 (dh/du, dh/dv), G the metric of the
    UV tangents Pu = dP/du, Pv = dP/dv. gradient: 2 x H x W (mm per UV unit) -> 3 x H x W."""
    pu, pv = g.dpdu, g.dpdv
    guu, guv, gvv = (pu * pu).sum(0), (pu * pv).sum(0), (pv * pv).sum(0)
    det = torch.where(g.mask[0], guu * gvv - guv * guv, torch.ones_like(guu)).clamp_min(1e-12)
    a = (gvv * gradient[0] - guv * gradient[1]) / det
    b = (guu * gradient[1] - guv * gradient[0]) / det
    n = g.normal - a * pu - b * pv
    n[2].clamp_(min=0.0)
    return normalize(n[None])[0] * g.mask


def _specular(normal: torch.Tensor, light: torch.Tensor, strength: float, shininess: float) -> torch.Tensor:
    """Blinn-Phong highlight for a viewer along +z: 1 x H x W."""
    half = torch.nn.functional.normalize(light + torch.tensor([0.0, 0.0, 1.0]), dim=0)
    lit = shade_lambertian(normal[None], light)[0] > 0
    return strength * shade_lambertian(normal[None], half)[0] ** shininess * lit


def _quantise(image: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 8 bits (values stay float)."""
    return torch.round(image.clamp(0.0, 1.0) * 255.0) / 255.0


def _lab_capture(normal, albedo, mask, rng, specular: float, noise: float) -> dict:
    """Four grey 8-bit captures under LAB_LIGHTS on a dark backdrop, and their stereo normals."""
    backdrop = rng.uniform(0.02, 0.08)
    images = []
    for light in LAB_LIGHTS:
        face = albedo * shade_lambertian(normal[None], light)[0] + _specular(normal, light, rng.uniform(0, specular), 20.0)
        image = torch.where(mask, face, torch.full_like(face, backdrop))
        images.append(_quantise(image + noise * torch.tensor(rng.standard_normal(image.shape), dtype=torch.float32)))
    images = torch.cat(images)
    ps_normal, _ = photometric_stereo(images, LAB_LIGHTS, mask)
    return {"images": images, "lights": LAB_LIGHTS.clone(), "normal": ps_normal, "albedo": albedo}


def _wild_capture(normal, albedo, mask, rng, size: int) -> dict:
    """Colour render under directional+ambient or SH light, over a random background."""
    colour = torch.tensor(1.0 + rng.normal(0, 0.05, 3), dtype=torch.float32).clamp(0.8, 1.2)
    direction = light_direction(rng.uniform(-70, 70), rng.uniform(-30, 60))
    light = dict.fromkeys(LIGHT_FIELDS, 0.0)
    light.update(red=float(colour[0]), green=float(colour[1]), blue=float(colour[2]))
    if rng.random() < 0.5:
        light.update(ambient=rng.uniform(0.05, 0.4), strength=rng.uniform(0.6, 1.0),
                     specular=rng.uniform(0.0, 0.15) * (rng.random() < 0.5))
        light.update(zip(("dir_x", "dir_y", "dir_z"), direction.tolist()))
        shading = light["ambient"] + light["strength"] * shade_lambertian(normal[None], direction)[0]
        highlight = _specular(normal, direction, light["specular"], rng.uniform(10, 40))
    else:
        sh = sh_from_direction(direction, rng.uniform(0.5, 0.9))[0]
        sh[0] += rng.uniform(0.2, 0.5) / 0.282095
        sh[1:] += torch.tensor(rng.normal(0, 0.08, 8), dtype=torch.float32)
        light.update(zip((f"sh_{i}" for i in range(9)), sh.tolist()))
        shading = sh_shading(normal[None], sh)[0].clamp_min(0.0)
        highlight = torch.zeros_like(shading)
    shading = shading * mask
    face = (albedo * shading + highlight) * colour[:, None, None]
    rgb = torch.where(mask, face, _background(rng, size))
    rgb = _quantise(rgb + rng.uniform(0, 0.02) * torch.tensor(rng.standard_normal(rgb.shape), dtype=torch.float32))
    return {"rgb": rgb, "gray": rgb_to_gray(rgb[None])[0], "albedo": albedo, "shading": shading,
            "light": torch.tensor([light[k] for k in LIGHT_FIELDS], dtype=torch.float32)}


def _background(rng, size: int) -> torch.Tensor:
    """A flat colour, a two-colour gradient or smooth colour blotches: 3 x size x size."""
    a, b = (torch.tensor(rng.uniform(0, 1, 3), dtype=torch.float32)[:, None, None] for _ in range(2))
    kind = rng.integers(3)
    if kind == 0:
        return a.expand(3, size, size).clone()
    if kind == 1:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = torch.linspace(-1, 1, size)
        t = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) * 0.5 + 0.5
        return a + (b - a) * t[None]
    coarse = torch.tensor(rng.uniform(0, 1, (1, 3, 4, 4)), dtype=torch.float32)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
