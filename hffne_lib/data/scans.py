"""3D scans (Florence's role) rendered to aligned normal maps and masks.

The same rasteriser and face-crop camera as the synthetic faces: orthographic, the scan's
projected box enlarged 1.2 times fills the image. Scans come with unknown winding; the
orientation whose visible faces mostly look at the camera is kept.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..conventions import to_uint8_image
from ..files import check_absent
from .images import list_files, output_stems, save_image, write_report
from .mesh import Mesh, face_normals, read_mesh
from .raster import project, rasterize, render_gbuffer, single_threaded

MESH_SUFFIXES = (".obj", ".ply")
#: What ``prepare_scan_folder`` writes per scan, after its stem: the normal map and the mask.
SCAN_OUTPUTS = ("_normal.png", "_mask.png")


@single_threaded
def render_mesh_normals(mesh: Mesh, size: int = 256, rotation: torch.Tensor | None = None,
                        margin: float = 1.2) -> dict[str, torch.Tensor]:
    """Camera-space normals of a mesh seen along -z after ``rotation`` (3 x 3, default none):
    -> normal 3 x size x size (unit in the mask, zero outside), mask 1 x size x size (bool),
    depth 1 x size x size (mesh units, larger = nearer)."""
    rotation = torch.eye(3) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32)
    screen, cam = project(mesh, rotation, size, margin)
    visible = rasterize(screen, mesh.faces, size, size, cull_backfaces=False).face_index
    facing = face_normals(cam, mesh.faces)[visible[visible >= 0], 2]
    if (facing < 0).sum() > (facing > 0).sum():
        mesh = Mesh(mesh.vertices, mesh.faces.flip(1), mesh.uvs)
    g = render_gbuffer(mesh, rotation, size, margin)
    return {"normal": g.normal, "mask": g.mask, "depth": g.depth}


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
