"""Triangle meshes: a small container, per-vertex normals and UV tangents, and OBJ/PLY reading.

The readers are written here (about a hundred and fifty lines) rather than taken from trimesh or
open3d: scans need only positions, triangles and their colour (an OBJ's texture through its MTL
file, or per-vertex colours), and those packages bring large optional stacks.
Front faces are counter-clockwise seen from outside; vertex normals then point outwards.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch


@dataclass
class Mesh:
    """vertices: V x 3 float (mm for faces); faces: F x 3 long (0-based); uvs: V x 2 in [0, 1]
    (u along the image columns, v along the rows) or None."""

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None = None


@dataclass
class SurfaceColour:
    """A scan's colour as its file gives it: per-vertex colours, or a texture per face.

    vertex: V x 3 RGB in [0, 1] (PLY [diffuse_]red/green/blue, OBJ "v x y z r g b"); or corner_uvs F x 3 x 2
    (an OBJ's vt: u along the texture's columns, v up from its bottom row) into the image
    textures[face_texture[f]] (F long; the MTL files' map_Kd, or the image beside the OBJ)."""

    vertex: torch.Tensor | None = None
    corner_uvs: torch.Tensor | None = None
    face_texture: torch.Tensor | None = None
    textures: tuple[Path, ...] = ()

    def describe(self) -> str:
        """Where the colour comes from: "vertex colours", or "texture a.jpg, b.jpg" (file names only)."""
        if self.vertex is not None:
            return "vertex colours"
        return "texture " + ", ".join(path.name for path in self.textures)


class _MeshFile(NamedTuple):
    """What a reader found: vertices V x 3, polygons (vertex index lists), and their colour if any."""

    vertices: np.ndarray
    polygons: list[list[int]]
    colours: np.ndarray | None = None                 # V x 3 in [0, 1]
    uv_polygons: list[list[int]] | None = None        # per polygon corner, an index into uvs (-1: none)
    uvs: np.ndarray | None = None                     # T x 2
    polygon_material: list[str] | None = None         # per polygon, its OBJ material ("": none named)
    libraries: tuple[str, ...] = ()                   # the OBJ's MTL files, relative to it


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
    return read_coloured_mesh(path, colour=False)[0]


def read_coloured_mesh(path: str | os.PathLike, colour: bool = True) -> tuple[Mesh, SurfaceColour | None]:
    """``read_mesh`` and the surface's colour (None: the file has none, or ``colour`` is False):
    PLY or OBJ vertex colours, else an OBJ's texture (its MTL files' map_Kd images, or without
    mtllib the image of the same name beside it: a.obj, a.jpg). Texture files are found, not read.

    Raises a one-line ValueError for a missing, unknown or malformed file, and (``colour``) for a
    missing MTL or texture file or a texture that leaves some faces without one.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such mesh file")
    readers = {".obj": _read_obj, ".ply": _read_ply}
    if path.suffix.lower() not in readers:
        raise ValueError(f"{path}: unsupported mesh format {path.suffix!r} (use .obj or .ply)")
    try:
        found = readers[path.suffix.lower()](path)
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed mesh ({error})") from None
    vertices, polygons = found.vertices, found.polygons
    faces = _fan(polygons)
    if len(vertices) == 0 or len(faces) == 0 or faces.max() >= len(vertices) or faces.min() < 0:
        raise ValueError(f"{path}: mesh has no valid triangles")
    mesh = Mesh(torch.as_tensor(vertices, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.long))
    return mesh, (_surface_colour(path, found) if colour else None)


def _surface_colour(path: Path, found: _MeshFile) -> SurfaceColour | None:
    """The colour a reader found, per vertex or per fanned face corner (see SurfaceColour)."""
    if found.colours is not None:
        return SurfaceColour(vertex=torch.as_tensor(found.colours, dtype=torch.float32).clamp(0.0, 1.0))
    if found.uvs is None or not len(found.uvs):
        return None
    materials = {}
    for library in found.libraries:
        materials.update(_read_mtl(path, path.parent / library))
    named = set(found.polygon_material)
    if not found.libraries:
        beside = sorted(p for p in path.parent.glob(path.stem + ".*") if p.suffix.lower() in _TEXTURE_SUFFIXES)
        materials = dict.fromkeys(named, beside[0]) if beside else {}
    elif named == {""} and len(materials) == 1:          # one textured material, never named by usemtl
        materials = dict.fromkeys(named, *materials.values())
    if not materials:
        return None
    textures = tuple(dict.fromkeys(materials.values()))
    polygon_texture = [textures.index(materials[m]) if m in materials else -1 for m in found.polygon_material]
    corners = _fan(found.uv_polygons)
    face_texture = np.repeat(polygon_texture, [len(p) - 2 for p in found.polygons])
    bare = int(((corners < 0).any(axis=1) | (face_texture < 0) | (corners >= len(found.uvs)).any(axis=1)).sum())
    if bare:
        raise ValueError(f"{path}: {bare} of {len(corners)} triangles have no texture coordinates or textured "
                         "material; render it without its colour (appearance 'shaded')")
    return SurfaceColour(corner_uvs=torch.as_tensor(found.uvs[corners], dtype=torch.float32),
                         face_texture=torch.as_tensor(face_texture, dtype=torch.long), textures=textures)


def _fan(polygons: list[list[int]]) -> np.ndarray:
    """Polygons (vertex index lists) -> F x 3 triangles, fanned from each polygon's first corner."""
    triangles = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def _read_obj(path: Path) -> _MeshFile:
    vertices, colours, uvs, polygons, uv_polygons, polygon_material, libraries = [], [], [], [], [], [], []
    material = ""
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split()
        kind = fields[0] if fields else ""
        if kind == "v":
            vertices.append([float(x) for x in fields[1:4]])
            colours.append([float(x) for x in fields[4:7]])
        elif kind == "vt":
            uvs.append([float(x) for x in fields[1:3]])
        elif kind == "f":
            # "f v/vt/vn ..." (1-based; negative indices count back from the last one read)
            corners = [(f.split("/") + [""])[:2] for f in fields[1:]]
            polygons.append([_obj_index(v, len(vertices)) for v, _ in corners])
            uv_polygons.append([_obj_index(t, len(uvs)) if t else -1 for _, t in corners])
            polygon_material.append(material)
        elif kind == "usemtl":
            material = line.split(None, 1)[1].strip()
        elif kind == "mtllib":
            libraries.append(line.split(None, 1)[1].strip())
    coloured = bool(colours) and all(len(c) == 3 for c in colours)
    return _MeshFile(np.asarray(vertices, dtype=np.float64).reshape(-1, 3), polygons,
                     _as_unit_colours(np.asarray(colours, dtype=np.float64)) if coloured else None,
                     uv_polygons, np.asarray(uvs, dtype=np.float64).reshape(-1, 2), polygon_material, tuple(libraries))


#: Texture image suffixes looked for beside an OBJ without mtllib.
_TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _obj_index(field: str, count: int) -> int:
    """An OBJ index (1-based, or negative counting back from the ``count`` read so far) -> 0-based."""
    i = int(field)
    return i - 1 if i > 0 else count + i


def _read_mtl(mesh: Path, library: Path) -> dict[str, Path]:
    """Material name -> its diffuse texture (map_Kd, relative to the MTL file); materials without one
    are left out. A missing MTL or texture file is a one-line ValueError naming the mesh."""
    if not library.is_file():
        raise ValueError(f"{mesh}: its material library {library.name} is not beside it")
    textures, material = {}, ""
    for line in library.read_text(errors="replace").splitlines():
        fields = line.split()
        if fields[:1] == ["newmtl"]:
            material = line.split(None, 1)[1].strip()
        elif fields[:1] == ["map_Kd"]:
            # the file name comes after any options (-s 1 1 1 ...); Windows exporters write backslashes
            texture = library.parent / fields[-1].replace("\\", "/")
            if not texture.is_file():
                raise ValueError(f"{mesh}: texture {fields[-1]} of material {material!r} ({library.name}) not found")
            textures[material] = texture
    return textures


def _as_unit_colours(colours: np.ndarray) -> np.ndarray:
    """Vertex colours V x 3 as given (0-1 floats, or 0-255) -> [0, 1]."""
    return colours / 255.0 if colours.max(initial=0.0) > 1.0 else colours


_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}


def _read_ply(path: Path) -> _MeshFile:
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
        vertices, polygons = _ply_ascii(body.decode("ascii").split(), elements)
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        vertices, polygons = _ply_binary(body, elements, "<" if fmt == "binary_little_endian" else ">")
    else:
        raise ValueError(f"unknown PLY format {fmt}")
    names = [p[-1] for name, _, props in elements if name == "vertex" for p in props]
    colours = None
    for channels in (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if set(channels) <= set(names):
            types = {p[-1]: p[0] for name, _, props in elements if name == "vertex" for p in props}
            colours = vertices[:, [names.index(c) for c in channels]]
            colours = colours / 255.0 if types[channels[0]] in ("uchar", "uint8") else _as_unit_colours(colours)
            break
    return _MeshFile(vertices[:, [names.index(a) for a in "xyz"]], polygons, colours)


def _ply_ascii(tokens: list[str], elements) -> tuple[np.ndarray, list[list[int]]]:
    """Every vertex property (V x P, in header order) and the face polygons of an ASCII body."""
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
            vertices = np.asarray(rows, dtype=np.float64).reshape(count, len(props))
        elif name == "face":
            polygons = [r[0] for r in rows]
    return vertices, polygons


def _ply_binary(body: bytes, elements, order: str) -> tuple[np.ndarray, list[list[int]]]:
    """Every vertex property (V x P, in header order) and the face polygons of a binary body."""
    offset, vertices, polygons = 0, np.zeros((0, 3)), []
    for name, count, props in elements:
        if all(p[0] != "list" for p in props):
            dtype = np.dtype([(p[1], order + _PLY_TYPES[p[0]]) for p in props])
            table = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
            offset += dtype.itemsize * count
            if name == "vertex":
                vertices = np.stack([table[p[1]].astype(np.float64) for p in props], axis=1).reshape(count, len(props))
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
