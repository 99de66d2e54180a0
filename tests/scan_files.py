"""Scan files for the tests: a procedural face written as a textured OBJ (MTL and PNG beside it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hffne_lib.data import make_identity
from hffne_lib.data.images import save_image
from hffne_lib.data.synthetic import Identity


def write_textured_face(folder: Path, identity: int = 3, size: int = 64, name: str = "face") -> Identity:
    """folder/<name>.obj, .mtl and _skin.png: the identity's neutral mesh with its albedo as the
    texture (OBJ's v runs up, the identity's UV rows down). Returns the identity."""
    face = make_identity(identity, "scans", 0, size)
    mesh = face.shape.mesh
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"mtllib {name}.mtl", "usemtl skin", *(f"v {x} {y} {z}" for x, y, z in mesh.vertices.tolist()),
             *(f"vt {u} {1 - v}" for u, v in mesh.uvs.tolist()),
             *(f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in (mesh.faces + 1).tolist())]
    (folder / f"{name}.obj").write_text("\n".join(lines) + "\n")
    (folder / f"{name}.mtl").write_text(f"newmtl skin\nKd 1 1 1\nmap_Kd -s 1 1 1 {name}_skin.png\n")
    save_image(folder / f"{name}_skin.png", np.round(face.texture.albedo.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    return face
