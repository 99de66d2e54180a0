"""Triangle meshes: a small container, per-vertex normals and UV tangents, and OBJ/PLY reading.

The readers are written here (about sixty lines) rather than taken from trimesh or open3d:
scans need only positions and triangles, and those packages bring large optional stacks.
Front faces are counter-clockwise seen from outside; vertex normals then point outwards.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Mesh:
    """vertices: V x 3 float (mm for faces); faces: F x 3 long (0-based); uvs: V x 2 in [0, 1]
    (u along the image columns, v along the rows) or None."""

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None = None


#: Landmarks every face model names in UV space (r/l = the subject's right/left; r is image left).
LANDMARKS = ("eye_outer_r", "eye_inner_r", "eye_inner_l", "eye_outer_l", "brow_r", "brow_l",
             "nose_tip", "nostril_r", "nostril_l", "mouth_r", "mouth_l", "chin")


@dataclass
class FaceShape:
    """One identity's face: its neutral mesh (with UVs), expression offsets E x V x 3 (mm) and
    the UV position of each name in LANDMARKS."""

    mesh: Mesh
    expressions: torch.Tensor
    landmarks_uv: dict[str, tuple[float, float]]

    def posed(self, weights: torch.Tensor) -> Mesh:
        """The mesh with expression blend weights E applied."""
        offsets = torch.einsum("e,evc->vc", weights.to(self.expressions.dtype), self.expressions)
        return Mesh(self.mesh.vertices + offsets, self.mesh.faces, self.mesh.uvs)


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted face normals (length = 2 x area): V x 3, F x 3 -> F x 3."""
    a, b, c = vertices[faces].unbind(1)
    return torch.linalg.cross(b - a, c - a, dim=-1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals, area-weighted average of the adjacent faces: V x 3, F x 3 -> V x 3."""
    normals = torch.zeros_like(vertices)
    weighted = face_normals(vertices, faces)
    for corner in range(3):
        normals.index_add_(0, faces[:, corner], weighted)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def vertex_tangents(vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface derivatives dP/du and dP/dv per vertex (mm per UV unit), averaged over the
    adjacent faces weighted by area: V x 3, F x 3, V x 2 -> (V x 3, V x 3)."""
    p0, p1, p2 = vertices[faces].unbind(1)
    t0, t1, t2 = uvs[faces].unbind(1)
    e1, e2, d1, d2 = p1 - p0, p2 - p0, t1 - t0, t2 - t0
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = det.abs() > 1e-12
    inv = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))[:, None]
    dpdu = (e1 * d2[:, 1:] - e2 * d1[:, 1:]) * inv
    dpdv = (e2 * d1[:, :1] - e1 * d2[:, :1]) * inv
    weight = (face_normals(vertices, faces).norm(dim=-1) * ok)[:, None]
    sums = torch.zeros(vertices.shape[0], 7, dtype=vertices.dtype)
    for corner in range(3):
        sums.index_add_(0, faces[:, corner], torch.cat([dpdu * weight, dpdv * weight, weight], dim=1))
    total = sums[:, 6:].clamp_min(1e-12)
    return sums[:, :3] / total, sums[:, 3:6] / total


def read_mesh(path: str | os.PathLike) -> Mesh:
    """Positions and triangles of an OBJ or PLY file (ASCII or binary PLY); polygons are fanned.

    Raises a one-line ValueError for a missing, unknown or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such mesh file")
    readers = {".obj": _read_obj, ".ply": _read_ply}
    if path.suffix.lower() not in readers:
        raise ValueError(f"{path}: unsupported mesh format {path.suffix!r} (use .obj or .ply)")
    try:
        vertices, polygons = readers[path.suffix.lower()](path)
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed mesh ({error})") from None
    faces = _fan(polygons)
    if len(vertices) == 0 or len(faces) == 0 or faces.max() >= len(vertices) or faces.min() < 0:
        raise ValueError(f"{path}: mesh has no valid triangles")
    return Mesh(torch.as_tensor(vertices, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.long))


def _fan(polygons: list[list[int]]) -> np.ndarray:
    """Polygons (vertex index lists) -> F x 3 triangles, fanned from each polygon's first corner."""
    triangles = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def _read_obj(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    vertices, polygons = [], []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "v":
            vertices.append([float(x) for x in fields[1:4]])
        elif fields and fields[0] == "f":
            # "f 1/2/3 ..." -> position indices; negative indices count from the end.
            ids = [int(f.split("/")[0]) for f in fields[1:]]
            polygons.append([i - 1 if i > 0 else len(vertices) + i for i in ids])
    return np.asarray(vertices, dtype=np.float64).reshape(-1, 3), polygons


_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}


def _read_ply(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    data = path.read_bytes()
    end = data.index(b"end_header") + len(b"end_header")
    end = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii").splitlines()
    fmt = header[1].split()[1]
    elements: list[tuple[str, int, list[list[str]]]] = []
    for line in header:
        fields = line.split()
        if fields[:1] == ["element"]:
            elements.append((fields[1], int(fields[2]), []))
        elif fields[:1] == ["property"]:
            elements[-1][2].append(fields[1:])
    body = data[end:]
    if fmt == "ascii":
        return _ply_ascii(body.decode("ascii").split(), elements)
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unknown PLY format {fmt}")
    return _ply_binary(body, elements, "<" if fmt == "binary_little_endian" else ">")


def _ply_ascii(tokens: list[str], elements) -> tuple[np.ndarray, list[list[int]]]:
    pos, vertices, polygons = 0, np.zeros((0, 3)), []
    for name, count, props in elements:
        rows = []
        for _ in range(count):
            row = []
            for prop in props:
                if prop[0] == "list":
                    n = int(tokens[pos])
                    row.append([int(t) for t in tokens[pos + 1:pos + 1 + n]])
                    pos += 1 + n
                else:
                    row.append(float(tokens[pos]))
                    pos += 1
            rows.append(row)
        if name == "vertex":
            names = [p[-1] for p in props]
            vertices = np.asarray([[r[names.index(a)] for a in "xyz"] for r in rows], dtype=np.float64)
        elif name == "face":
            polygons = [r[0] for r in rows]
    return vertices.reshape(-1, 3), polygons


def _ply_binary(body: bytes, elements, order: str) -> tuple[np.ndarray, list[list[int]]]:
    offset, vertices, polygons = 0, np.zeros((0, 3)), []
    for name, count, props in elements:
        if all(p[0] != "list" for p in props):
            dtype = np.dtype([(p[1], order + _PLY_TYPES[p[0]]) for p in props])
            table = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
            offset += dtype.itemsize * count
            if name == "vertex":
                vertices = np.stack([table[a].astype(np.float64) for a in "xyz"], axis=1)
            continue
        if name != "face" or len(props) != 1:
            raise ValueError(f"unsupported PLY element {name!r} with list properties")
        count_type, index_type = (np.dtype(order + _PLY_TYPES[t]) for t in props[0][1:3])
        triangles = np.dtype([("n", count_type), ("v", index_type, (3,))])
        if triangles.itemsize * count <= len(body) - offset:
            table = np.frombuffer(body, triangles, count, offset)
            if (table["n"] == 3).all():
                polygons = table["v"].astype(np.int64).tolist()
                offset += triangles.itemsize * count
                continue
        for _ in range(count):
            n = int(np.frombuffer(body, count_type, 1, offset)[0])
            offset += count_type.itemsize
            polygons.append(np.frombuffer(body, index_type, n, offset).astype(np.int64).tolist())
            offset += index_type.itemsize * n
    return vertices, polygons
