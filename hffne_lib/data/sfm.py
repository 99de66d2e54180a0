"""The Surrey Face Model (shape only, 3448 vertices) as a source of face geometry.

The model file is a setting, never a path in the code: pass ``path`` or set HFFNE_SFM_PATH to
the npz with fields mean (3448 x 3, mm), basis (10344 x 63), eigenvalues (63), triangles
(6736 x 3), texcoords (3448 x 2), expressions (6 x 10344), expression_names.
A shape is mean + basis @ (alpha * sqrt(eigenvalues)) reshaped to 3448 x 3, alpha ~ N(0, 1).
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .mesh import FaceShape, Mesh, face_normals

#: Environment variable naming the SFM npz when no path is given.
SFM_ENV = "HFFNE_SFM_PATH"

#: LANDMARKS as SFM vertex ids, from the model's iBUG-68 mapping (ibug_to_sfm.txt: points
#: 37, 40, 43, 46 eye corners; 20, 25 brow middles; 31 nose tip; 32, 36 nostrils; 49, 55 mouth
#: corners; 9 chin).
SFM_LANDMARK_VERTICES = {"eye_outer_r": 177, "eye_inner_r": 181, "eye_inner_l": 614, "eye_outer_l": 610,
                         "brow_r": 233, "brow_l": 666, "nose_tip": 114, "nostril_r": 100, "nostril_l": 537,
                         "mouth_r": 398, "mouth_l": 812, "chin": 33}


def resolve_sfm_path(path: str | os.PathLike | None = None) -> Path | None:
    """The SFM file to use: ``path``, else $HFFNE_SFM_PATH, else None. A named file that does
    not exist is an error."""
    chosen = path if path is not None else os.environ.get(SFM_ENV) or None
    if chosen is None:
        return None
    chosen = Path(chosen).expanduser()
    if not chosen.is_file():
        raise ValueError(f"Surrey Face Model not found at {chosen} (set {SFM_ENV} or pass sfm_path)")
    return chosen


#: The npz's fields (see the module doc).
SFM_FIELDS = ("mean", "basis", "eigenvalues", "triangles", "texcoords", "expressions", "expression_names")


class SurreyFaceModel:
    """The loaded model; ``sample(rng)`` draws identities as FaceShape."""

    def __init__(self, path: str | os.PathLike):
        path = resolve_sfm_path(path)
        try:
            archive = np.load(path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:   # truncated, not a zip, pickled
            raise ValueError(f"{path}: not a readable npz ({type(err).__name__}: {err})") from None
        with archive as data:
            missing = [name for name in SFM_FIELDS if name not in data.files]
            if missing:
                raise ValueError(f"{path}: not a Surrey Face Model npz, it lacks {', '.join(missing)} "
                                 "(the fields it needs: hffne_lib.data.sfm)")
            self.mean = torch.tensor(data["mean"], dtype=torch.float32)
            self.basis = torch.tensor(data["basis"], dtype=torch.float32)
            self.std = torch.tensor(np.sqrt(data["eigenvalues"]), dtype=torch.float32)
            faces = torch.tensor(data["triangles"], dtype=torch.long)
            self.uvs = torch.tensor(data["texcoords"], dtype=torch.float32)
            self.expressions = torch.tensor(data["expressions"], dtype=torch.float32).reshape(-1, *self.mean.shape)
            self.expression_names = tuple(str(n) for n in data["expression_names"])
        # Front faces must be counter-clockwise seen from the camera (the face looks along +z).
        self.faces = faces if face_normals(self.mean, faces)[:, 2].sum() > 0 else faces.flip(1)
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.landmarks_uv = {k: tuple(self.uvs[v].tolist()) for k, v in SFM_LANDMARK_VERTICES.items()}

    def sample(self, rng: np.random.Generator, clip: float = 2.5) -> FaceShape:
        """A random identity: alpha ~ N(0, 1) clipped to +-clip standard deviations."""
        alpha = torch.tensor(np.clip(rng.standard_normal(len(self.std)), -clip, clip), dtype=torch.float32)
        vertices = self.mean + (self.basis @ (alpha * self.std)).reshape(self.mean.shape)
        return FaceShape(Mesh(vertices, self.faces, self.uvs), self.expressions, self.landmarks_uv)
