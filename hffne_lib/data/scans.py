"""3D scans (Florence's role): aligned normal maps and masks, and the ``scans`` split of Table 2.

The same rasteriser and face-crop camera as the synthetic faces: orthographic, the scan's
projected box enlarged 1.2 times fills the image. Scans come with unknown winding; the
orientation whose visible faces mostly look at the camera is kept.

``prepare_scan_folder`` writes each scan's normal map and mask as PNGs, to look at.
``prepare_scans`` writes split ``scans`` in the benchmark's shard format (FaceNormalDataset reads
it; evaluate and the tables take it through the config's ``split_roots``): each scan rendered as
an input image from its own colour (an OBJ's texture, or vertex colours) beside its normals, as
the paper renders Florence's textured scans. Its crop is the photos' protocol by default (the face
found in the render, box x 1.2, mask = the scan inside the face ellipse), so the networks see a
scan as they see a photo. Real scans carry no detail annotation: detail_mask is empty (the
evaluation's detail rows stay empty, as for Photoface), pose is zero.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..conventions import normalize, shade_lambertian, to_uint8_image
from ..files import check_absent
from ..rendering import light_direction
from .benchmark import ROLE_OFFSETS, pack_samples
from .faces import CROP_SCALE, check_outside, crop_face, detect_faces, face_mask
from .images import list_files, load_image, output_stems, save_image, write_report
from .mesh import Mesh, SurfaceColour, face_normals, read_coloured_mesh, read_mesh
from .prepared import build_from_chunks
from .raster import Fragments, interpolate, interpolate_corners, project, rasterize, render_gbuffer, single_threaded
from .synthetic import LIGHT_FIELDS

MESH_SUFFIXES = (".obj", ".ply")
#: What ``prepare_scan_folder`` writes per scan, after its stem: the normal map and the mask.
SCAN_OUTPUTS = ("_normal.png", "_mask.png")
#: How ``prepare_scans`` frames a scan: "detect" as photos are cropped (``faces.crop_face`` of the
#: face found in the render; mask = the scan inside ``faces.face_mask``), "box" the whole scan
#: (its projected box x 1.2, mask = the scan), as the synthetic benchmark frames its scans.
CROPS = ("detect", "box")
#: What ``prepare_scans`` paints a scan with: "colour", its own (as captured, lit only when a light is
#: given; a scan without colour is shaded instead), or "shaded": grey SHADED_ALBEDO under the light.
APPEARANCES = ("colour", "shaded")
SHADED_ALBEDO = 0.6
#: (azimuth, elevation) in degrees (``rendering.light_direction``) of the light a shaded scan gets
#: when none is given: from the front, a little above.
DEFAULT_LIGHT = (0.0, 20.0)
#: A "detect" crop is taken from a render this many times the output size, then low-passed down.
DETECT_OVERSAMPLE = 2
#: Report columns of ``prepare_scans``.
SCAN_REPORT_COLUMNS = ["file", "status", "message", "colour"]


def _facing_camera(mesh: Mesh, rotation: torch.Tensor, size: int, margin: float) -> Mesh:
    """The mesh, its faces flipped when most of those the camera sees face away from it (scans
    come with either winding)."""
    screen, cam = project(mesh, rotation, size, margin)
    visible = rasterize(screen, mesh.faces, size, size, cull_backfaces=False).face_index
    facing = face_normals(cam, mesh.faces)[visible[visible >= 0], 2]
    if (facing < 0).sum() > (facing > 0).sum():
        return Mesh(mesh.vertices, mesh.faces.flip(1), mesh.uvs)
    return mesh


@single_threaded
def render_mesh_normals(mesh: Mesh, size: int = 256, rotation: torch.Tensor | None = None,
                        margin: float = 1.2) -> dict[str, torch.Tensor]:
    """Camera-space normals of a mesh seen along -z after ``rotation`` (3 x 3, default none):
    -> normal 3 x size x size (unit in the mask, zero outside), mask 1 x size x size (bool),
    depth 1 x size x size (mesh units, larger = nearer)."""
    rotation = torch.eye(3) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32)
    g = render_gbuffer(_facing_camera(mesh, rotation, size, margin), rotation, size, margin)
    return {"normal": g.normal, "mask": g.mask, "depth": g.depth}


@single_threaded
def render_scan(mesh: Mesh, colour: SurfaceColour | None, size: int = 256, rotation: torch.Tensor | None = None,
                light: tuple[float, float] | None = None, ambient: float = 0.3,
                margin: float = 1.2) -> dict[str, torch.Tensor]:
    """A scan as ``render_mesh_normals`` frames it, with an input image: normal 3, mask 1 (bool),
    albedo 3 (its colour, or SHADED_ALBEDO grey without), shading 1, rgb 3 = albedo x shading on
    black, all size x size in [0, 1], and light (LIGHT_FIELDS). Shading: ambient + (1 - ambient)
    max(0, n . l) for a light at (azimuth, elevation) degrees; none (1) for a coloured scan
    without ``light``, whose texture holds the capture's own lighting; DEFAULT_LIGHT for a scan
    without colour."""
    rotation = torch.eye(3) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32)
    g = render_gbuffer(_facing_camera(mesh, rotation, size, margin), rotation, size, margin)
    mask = g.mask.float()
    albedo = SHADED_ALBEDO * mask.expand(3, -1, -1) if colour is None else _albedo(g.fragments, mesh, colour)
    fields = dict.fromkeys(LIGHT_FIELDS, 0.0)
    fields.update(red=1.0, green=1.0, blue=1.0)
    if light is None and colour is not None:
        shading = mask
        fields["ambient"] = 1.0
    else:
        direction = light_direction(*(light or DEFAULT_LIGHT))
        shading = (ambient + (1.0 - ambient) * shade_lambertian(g.normal[None], direction)[0]) * mask
        fields.update(ambient=ambient, strength=1.0 - ambient)
        fields.update(zip(("dir_x", "dir_y", "dir_z"), direction.tolist()))
    return {"normal": g.normal, "mask": g.mask, "albedo": albedo, "shading": shading,
            "rgb": (albedo * shading).clamp(0.0, 1.0),
            "light": torch.tensor([fields[k] for k in LIGHT_FIELDS], dtype=torch.float32)}


def _albedo(fragments: Fragments, mesh: Mesh, colour: SurfaceColour) -> torch.Tensor:
    """A scan's colour per pixel, 3 x H x W (zero outside): its vertex colours interpolated, or
    its textures looked up bilinearly, each first low-passed to the render's resolution."""
    if colour.vertex is not None:
        return interpolate(fragments, mesh.faces, colour.vertex)
    uv = interpolate_corners(fragments, colour.corner_uvs)
    texture_of = torch.where(fragments.mask, colour.face_texture[fragments.face_index.clamp_min(0)], -1)
    albedo = torch.zeros(3, *fragments.face_index.shape)
    for k, path in enumerate(colour.textures):
        covered = texture_of == k
        if covered.any():
            texture = _low_passed(load_image(path), uv, covered)
            # OBJ's v runs up from the texture's bottom row; grid_sample's y runs down from its top
            grid = torch.stack([uv[0][covered] * 2 - 1, 1 - uv[1][covered] * 2], -1)[None, None]
            albedo[:, covered] = torch.nn.functional.grid_sample(
                torch.from_numpy(np.moveaxis(texture, -1, 0))[None], grid, mode="bilinear",
                padding_mode="border", align_corners=False)[0, :, 0]
    return albedo


def _low_passed(texture: np.ndarray, uv: torch.Tensor, covered: torch.Tensor) -> np.ndarray:
    """A texture (H x W x 3) blurred as ``faces.crop_face`` blurs a crop that shrinks its image:
    Gaussian sigma (texels per pixel - 1) / 2, texels per pixel the median step of ``uv`` (2 x H x W)
    between neighbouring pixels ``covered`` (H x W) by it. A bilinear look-up alone would alias."""
    scale = torch.tensor([texture.shape[1], texture.shape[0]], dtype=torch.float32)[:, None]
    steps = [(uv[:, :, 1:] - uv[:, :, :-1])[:, covered[:, 1:] & covered[:, :-1]],
             (uv[:, 1:] - uv[:, :-1])[:, covered[1:] & covered[:-1]]]
    lengths = torch.cat([(step * scale).norm(dim=0) for step in steps])
    texels = float(lengths.median()) if len(lengths) else 1.0
    if texels <= 1.0:
        return texture
    return cv2.GaussianBlur(texture, (0, 0), (texels - 1.0) / 2, borderType=cv2.BORDER_REPLICATE)


def scan_sample(mesh: Mesh, colour: SurfaceColour | None, size: int = 256, crop: str = "detect",
                rotation: torch.Tensor | None = None, light: tuple[float, float] | None = None,
                ambient: float = 0.3) -> dict[str, torch.Tensor] | None:
    """One sample of split ``scans`` (``render_scan``'s maps at size x size, framed by ``crop``, one
    of CROPS); None when crop "detect" finds no face in the render."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}: use one of {CROPS}")
    if crop == "box":
        return render_scan(mesh, colour, size, rotation, light, ambient)
    rendered = render_scan(mesh, colour, DETECT_OVERSAMPLE * size, rotation, light, ambient)
    image = rendered["rgb"].permute(1, 2, 0).numpy()
    faces = detect_faces(image, min_size=max(32, size // 4))
    if not faces:
        return None
    crops = {key: torch.from_numpy(np.ascontiguousarray(np.moveaxis(
                 crop_face(rendered[key].float().permute(1, 2, 0).numpy(), faces[0], size, CROP_SCALE)[0]
                 .reshape(size, size, -1), -1, 0)))
             for key in ("normal", "mask", "albedo", "shading", "rgb")}
    mask = (crops["mask"] > 0.5) & torch.from_numpy(face_mask(size, CROP_SCALE))[None].bool()
    return {"normal": normalize(crops["normal"][None])[0] * mask, "mask": mask,
            "albedo": crops["albedo"] * mask, "shading": crops["shading"] * mask, "rgb": crops["rgb"],
            "light": rendered["light"]}


def prepare_scan_folder(source: str | os.PathLike, target: str | os.PathLike, size: int = 256,
                        rotation: torch.Tensor | None = None, progress: bool = True,
                        overwrite: bool = False) -> pd.DataFrame:
    """Render every OBJ/PLY under ``source`` to target/<relative path>_normal.png (RGB
    encoding of hffne_lib.conventions) and _mask.png (a.obj and a.ply beside it: a_obj_normal.png,
    a_ply_normal.png); returns the report also written, atomically, to target/report.csv (file,
    status ok / unreadable, message). Bad files never stop the run; outputs already there are a
    one-line OutputExistsError unless ``overwrite``."""
    source, target = Path(source), Path(target)
    files = list_files(source, MESH_SUFFIXES)
    stems = output_stems([file.relative_to(source) for file in files])
    if not overwrite:
        check_absent([target / "report.csv", *(f"{target / stem}{suffix}" for stem in stems
                                               for suffix in SCAN_OUTPUTS)], "pass overwrite=True to replace it")
    rows = []
    for file, stem in tqdm(zip(files, stems), total=len(files), desc="scans", unit="scan", disable=not progress):
        relative = file.relative_to(source)
        try:
            rendered = render_mesh_normals(read_mesh(file), size, rotation)
        except ValueError as error:
            rows.append({"file": str(relative), "status": "unreadable", "message": str(error)})
            continue
        out = target / stem
        out.parent.mkdir(parents=True, exist_ok=True)
        normal_png, mask_png = (f"{out}{suffix}" for suffix in SCAN_OUTPUTS)
        save_image(normal_png, to_uint8_image(rendered["normal"]))
        save_image(mask_png, rendered["mask"][0].numpy().astype(np.uint8) * 255)
        rows.append({"file": str(relative), "status": "ok", "message": ""})
    report = pd.DataFrame(rows, columns=["file", "status", "message"])
    write_report(report, target / "report.csv")
    return report


def prepare_scans(source: str | os.PathLike, target: str | os.PathLike, size: int = 256, crop: str = "detect",
                  appearance: str = "colour", light: tuple[float, float] | None = None, ambient: float = 0.3,
                  rotation: Sequence[Sequence[float]] | None = None, shard_size: int = 64,
                  progress: bool = True) -> dict:
    """Every OBJ/PLY under ``source`` (recursively) to split ``scans`` in ``target`` (``scan_sample``;
    ``appearance``: one of APPEARANCES; ``rotation``: 3 x 3, turning the scans to face +z, the
    camera, with y up). Scans that cannot be read or in which no face is found are listed in
    target/report.csv and left out. Resumable and refused over other settings, as the benchmark.
    Returns the manifest. Evaluate on it with ``python -m hffne_lib.evaluate RUN --split-root
    scans=TARGET`` (a config's ``split_roots``: notebook 03 for Table 2)."""
    if appearance not in APPEARANCES:
        raise ValueError(f"unknown appearance {appearance!r}: use one of {APPEARANCES}")
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}: use one of {CROPS}")
    source, target = Path(source).expanduser(), Path(target).expanduser()
    files = list_files(source, MESH_SUFFIXES)
    if not files:
        raise ValueError(f"{source}: no meshes (.obj, .ply) in it or below it")
    check_outside(source, target)
    turn = None if rotation is None else torch.as_tensor(rotation, dtype=torch.float32)
    if turn is not None and turn.shape != (3, 3):
        raise ValueError(f"rotation must be a 3 x 3 matrix, got shape {tuple(turn.shape)}")
    settings = {"source": "scans", "root": str(source.resolve()), "files": [str(f.relative_to(source)) for f in files],
                "size": size, "crop": crop, "appearance": appearance, "light": None if light is None else list(light),
                "ambient": ambient, "rotation": None if turn is None else turn.tolist(), "split": "scans",
                "ground_truth": True}

    def make_shard(chunk: Sequence[int]) -> tuple[dict[str, np.ndarray] | None, list[dict]]:
        rows, samples = [], []
        for index in chunk:
            row = {"file": settings["files"][index], "status": "ok", "message": "", "colour": "none"}
            try:
                mesh, colour = read_coloured_mesh(files[index], colour=appearance == "colour")
                row["colour"] = "none (shaded)" if colour is None else colour.describe()
                sample = scan_sample(mesh, colour, size, crop, turn, light, ambient)
            except ValueError as error:
                rows.append({**row, "status": "unreadable", "message": str(error)})
                continue
            if sample is None:
                rows.append({**row, "status": "no_face", "message": "no face found in its render: "
                             "check its rotation, or frame the whole scan (crop 'box')"})
                continue
            # the synthetic scans' fields: these normals are exact, no detail annotation, no known pose
            samples.append({**sample, "normal_exact": sample["normal"], "detail_mask": torch.zeros_like(sample["mask"]),
                            "pose": torch.zeros(3), "identity": ROLE_OFFSETS["scans"] + index})
            rows.append(row)
        return (pack_samples(samples, "scans") if samples else None), rows

    chunks = [("scans", range(k, min(k + shard_size, len(files)))) for k in range(0, len(files), shard_size)]
    return build_from_chunks(target, settings, chunks, make_shard, SCAN_REPORT_COLUMNS, "scans", progress)
