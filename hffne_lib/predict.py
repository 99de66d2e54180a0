"""Normals from any photo: load, detect the face(s), crop, both stages, map back, write.

    estimator = load_estimator(checkpoint=["results/runs/cpu"])
    result = predict_image(estimator, load_image("me.jpg"))     # a Prediction
    write_prediction(result, "out/me")                           # the files listed in OUTPUTS

Faces are found and cropped by hffne_lib.data (the data-prep crop protocol), run through the
coarse and refinement stages at the model's resolution, and pasted back onto the photo's frame.
The crop is a similarity without rotation, so camera-space normals stay valid when pasted back.
Normal conventions (axes, RGB encoding) are hffne_lib.conventions'.
"""
from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import LATEST, checkpoint_entry, checkpoint_kind, load_checkpoint
from .conventions import normalize, rgb_to_gray, shade_lambertian, to_uint8_image
from .data import CROP_SCALE, CropTransform, FaceBox, aligned_box, crop_face, detect_faces, face_mask, load_image, uncrop
from .data.images import IMAGE_SUFFIXES, as_rgb, output_stems, save_image, to_uint8
from .files import OutputExistsError, check_absent
from .fitting import FitSettings
from .official import CheckpointError
from .pipeline import NormalEstimator
from .rendering import light_direction

#: Side (px) of the authors' released models' input.
OFFICIAL_RESOLUTION = 256
#: Smallest face side (px) the detector looks for; smaller images cannot hold a face.
MIN_FACE_SIDE = 32
#: Light of the shaded render: from the upper left, 30 degrees off the camera axis each way.
RENDER_LIGHT = (-30.0, 30.0)
#: Ambient share of the shaded render (the rest is Lambertian).
RENDER_AMBIENT = 0.15
#: Files written per face k (``face{k}_`` prefix) and per image, in ``write_prediction``'s folder.
FACE_OUTPUTS = ("normals.png", "normals.npy", "mask.png", "shaded.png", "crop.png", "sheet.png")
IMAGE_OUTPUTS = ("image_normals.png", "image_normals.npy", "image_mask.png", "image_overlay.png")
#: Where to get weights, printed when none are given.
NO_WEIGHTS_HELP = (
    "no weights given: pass --checkpoint RUN_DIR (a run of `python -m hffne_lib.train both --preset cpu "
    "--run-dir results/runs/cpu`, about 15 min on 2 CPU cores) or the authors' released models with "
    "--official-exemplar ExemplarModel.pkl --official-refiner RefinerModel.pt")


class NoFaceError(ValueError):
    """The face detector found nothing (or the image is too small to hold a face)."""


@dataclass
class FacePrediction:
    """One face. S is the model's resolution (px); normals are unit, camera axes."""

    box: FaceBox
    transform: CropTransform       # original pixels -> crop pixels, for ``uncrop``
    crop: np.ndarray               # S x S x 3 float RGB in [0, 1]
    coarse: torch.Tensor           # 3 x S x S, the exemplar G(I)
    normals: torch.Tensor          # 3 x S x S, refined (fitted, when the estimator fits: hffne_lib.fitting)
    mask: np.ndarray               # S x S bool, the face region (ellipse in the detector's box)


@dataclass
class Prediction:
    """A photo's faces, largest first, and their normals pasted onto the photo's H x W frame."""

    image: np.ndarray              # H x W x 3 float RGB in [0, 1]
    faces: list[FacePrediction]
    normals: torch.Tensor          # 3 x H x W, zero outside every face mask
    mask: np.ndarray               # H x W bool, union of the face masks


# ----------------------------------------------------------------------------- weights
def model_resolution(estimator: NormalEstimator) -> int:
    """Input side (px) of the estimator: its training resolution, or 256 for the official models."""
    return int(estimator.provenance.get("resolution", OFFICIAL_RESOLUTION))


def resolve_checkpoints(paths: Sequence[str | os.PathLike]) -> tuple[Path, Path | None]:
    """(coarse, refiner) checkpoint files from what ``--checkpoint`` accepts:

    * RUN_DIR: ``RUN_DIR/refiner/latest.pt`` and the coarse checkpoint it was trained with (still
      at the iteration it learnt from, else CheckpointError);
    * a refinement stage folder (``RUN_DIR/<stage>`` holding latest.pt) or a refiner .pt file:
      the same, the coarse checkpoint found by name in ``RUN_DIR/coarse``;
    * two files: COARSE.pt REFINER.pt;
    * a coarse checkpoint alone (``RUN_DIR/coarse`` or a .pt file in it): refiner None, for
      test-time fitting (beyond the paper; ``NormalEstimator.from_checkpoints``).
    """
    if len(paths) == 2:
        return Path(paths[0]), Path(paths[1])
    if len(paths) != 1:
        raise CheckpointError(f"--checkpoint takes RUN_DIR, REFINER.pt, COARSE.pt or COARSE.pt REFINER.pt, "
                              f"got {len(paths)} paths")
    path = Path(paths[0])
    if path.is_dir():
        path = path / LATEST if (path / LATEST).is_file() else path / "refiner" / LATEST
    if path.is_file() and checkpoint_kind(path) == "coarse":
        return path, None
    trained_from = load_checkpoint(path, "refiner", mmap=True)["exemplar"]  # (the weights are read later)
    exemplar = Path(trained_from["path"])
    coarse = path.parent.parent / "coarse" / exemplar.name
    coarse = coarse if coarse.is_file() else exemplar
    trained_on = trained_from["iteration"]
    # (not a coarse checkpoint: loading it says why)
    now = checkpoint_entry(coarse, "iteration") if checkpoint_kind(coarse) == "coarse" else trained_on
    if trained_on != now:
        raise CheckpointError(f"{path}: it learnt from the exemplars of coarse iteration {trained_on}, and {coarse} is "
                              f"at iteration {now} now; retrain it, or pass COARSE.pt REFINER.pt to pair them anyway")
    return coarse, path


def load_estimator(checkpoint: Sequence[str | os.PathLike] | None = None,
                   official_exemplar: str | os.PathLike | None = None,
                   official_refiner: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu", fitting: FitSettings | None = None) -> NormalEstimator:
    """The project's checkpoints (see ``resolve_checkpoints``) or the authors' two files, with
    ``fitting`` (beyond the paper; None: off) set.

    Raises CheckpointError (one line) for a missing, wrong-kind or wrong-resolution checkpoint,
    when no weights (or both kinds) are given, or for a coarse checkpoint alone without ``fitting``.
    """
    official = official_exemplar is not None or official_refiner is not None
    if checkpoint and official:
        raise CheckpointError("give either --checkpoint or --official-exemplar/--official-refiner, not both")
    if official:
        if official_exemplar is None or official_refiner is None:
            raise CheckpointError("the official weights need both --official-exemplar and --official-refiner")
        estimator = NormalEstimator.from_official(official_exemplar, official_refiner, device)
        estimator.fitting = fitting
        return estimator
    if not checkpoint:
        raise CheckpointError(NO_WEIGHTS_HELP)
    return NormalEstimator.from_checkpoints(*resolve_checkpoints(checkpoint), device=device, fitting=fitting)


# ----------------------------------------------------------------------------- prediction
def face_crops(image: np.ndarray, size: int, all_faces: bool = False, crop_scale: float = CROP_SCALE,
               aligned: bool = False) -> list[tuple[FaceBox, np.ndarray, CropTransform]]:
    """The largest face (every face with ``all_faces``, largest first) of an H x W x 3 float RGB
    image in [0, 1] (``as_rgb``'s or ``load_image``'s output), found and cropped to ``size`` px by
    the data-prep protocol: (box, S x S x 3 float crop, transform) each. ``aligned``: the image is a
    face crop already (FFHQ, CelebA-HQ); no detection, the whole image is the crop. Raises
    NoFaceError when no face is found or the image is too small for one, DetectorUnavailableError
    when OpenCV has no face detector."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_FACE_SIDE:
        raise NoFaceError(f"image too small for a face ({width}x{height} px, need {MIN_FACE_SIDE} px a side)")
    if aligned:
        boxes = [aligned_box(height, width, crop_scale)]
    else:
        boxes = detect_faces(image, min_size=MIN_FACE_SIDE)
        if not boxes:
            raise NoFaceError("no face found")
        boxes = boxes if all_faces else boxes[:1]
    return [(box, *crop_face(image, box, size=size, scale=crop_scale)) for box in boxes]


def predict_image(estimator: NormalEstimator, image: np.ndarray, all_faces: bool = False,
                  crop_scale: float = CROP_SCALE, aligned: bool = False) -> Prediction:
    """Normals of the largest face (every face with ``all_faces``) of an image array (H x W x 3 RGB,
    uint8 or float in [0, 1]; grey and RGBA too): refined, or (beyond the paper) fitted when
    ``estimator.fitting`` is set. Faces and errors as ``face_crops``; ValueError for an array that
    is not an image."""
    image = as_rgb(image)
    size = model_resolution(estimator)
    boxes, crops, transforms = zip(*face_crops(image, size, all_faces, crop_scale, aligned))
    rgb = torch.from_numpy(np.stack(crops).astype(np.float32)).permute(0, 3, 1, 2)
    gray = rgb_to_gray(rgb)
    coarse = estimator.coarse(gray)
    mask = face_mask(size, crop_scale)
    if estimator.fitting:
        face_normals = estimator.fit(gray, coarse, torch.from_numpy(mask).expand(len(boxes), 1, size, size)).cpu()
    else:
        face_normals = estimator.refine(gray, coarse).cpu()
    faces = [FacePrediction(box, transform, crop, coarse[i].cpu(), face_normals[i], mask)
             for i, (box, transform, crop) in enumerate(zip(boxes, transforms, crops))]
    normals, full_mask = paste_back(faces, image.shape[:2])
    return Prediction(image, faces, normals, full_mask)


def paste_back(faces: Sequence[FacePrediction], shape: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """Faces' masked normals on the photo's frame, larger faces on top: -> 3 x H x W, H x W bool."""
    normals = np.zeros((*shape, 3), np.float32)
    mask = np.zeros(shape, bool)
    for face in reversed(faces):
        face_normals = uncrop(face.normals.permute(1, 2, 0).numpy(), face.transform, shape)
        face_mask_full = uncrop(face.mask.astype(np.float32), face.transform, shape) >= 0.5
        normals[face_mask_full] = face_normals[face_mask_full]
        mask |= face_mask_full
    unit = normalize(torch.from_numpy(normals).permute(2, 0, 1)[None])[0]
    return unit * torch.from_numpy(mask)[None], mask


# ----------------------------------------------------------------------------- writing
def shaded_render(normals: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """Grey Lambertian render under RENDER_LIGHT: 3 x H x W normals, H x W mask -> H x W in [0, 1]."""
    light = light_direction(*RENDER_LIGHT)
    shade = shade_lambertian(normals[None], light)[0, 0].numpy()
    return (RENDER_AMBIENT + (1.0 - RENDER_AMBIENT) * shade) * mask


def face_sheet(face: FacePrediction) -> np.ndarray:
    """Side by side: crop | exemplar | refined normals | shaded render -> S x 4S x 3 uint8."""
    shaded = to_uint8(shaded_render(face.normals, face.mask))
    return np.concatenate([to_uint8(face.crop), to_uint8_image(face.coarse), to_uint8_image(face.normals),
                           np.repeat(shaded[..., None], 3, axis=2)], axis=1)


def output_paths(out_dir: str | os.PathLike, faces: int) -> list[Path]:
    """Every file ``write_prediction`` writes for an image with ``faces`` faces."""
    out_dir = Path(out_dir)
    return ([out_dir / f"face{k}_{name}" for k in range(faces) for name in FACE_OUTPUTS]
            + [out_dir / name for name in IMAGE_OUTPUTS])


def write_prediction(prediction: Prediction, out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Write the per-face and per-image files of ``output_paths`` into ``out_dir``.

    .npy normals are H x W x 3 float32 (x, y, z), zero outside the mask; masks are 0/255 PNGs.
    Raises OutputExistsError (one line) when an output exists and ``overwrite`` is off, and
    OSError or ValueError (one line) when the folder or a file cannot be written.
    """
    out_dir = Path(out_dir)
    paths = output_paths(out_dir, len(prediction.faces))
    if not overwrite:
        check_absent(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = iter(paths)
    for face in prediction.faces:
        masked = face.normals * torch.from_numpy(face.mask)[None]
        for array in (to_uint8_image(face.normals), masked.permute(1, 2, 0).numpy(), to_uint8(face.mask),
                      to_uint8(shaded_render(face.normals, face.mask)), to_uint8(face.crop), face_sheet(face)):
            save_array(next(files), array)
    encoded = to_uint8_image(prediction.normals)
    overlay = np.where(prediction.mask[..., None], encoded, to_uint8(prediction.image))
    for array in (encoded, prediction.normals.permute(1, 2, 0).numpy(), to_uint8(prediction.mask), overlay):
        save_array(next(files), array)
    return paths


def save_array(path: Path, array: np.ndarray) -> None:
    """uint8 arrays as PNG (hffne_lib.data's writer), float arrays as .npy (float32)."""
    if path.suffix == ".npy":
        np.save(path, array.astype(np.float32))
    else:
        save_image(path, array)


# ----------------------------------------------------------------------------- batches
@dataclass
class BatchSummary:
    """Outcome counts of a batch, one message per input that was not done, and the wall seconds
    of each photo done (read, detect, crop, both stages, write)."""

    counts: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    OUTCOMES = ("done", "no face", "unreadable", "skipped (exists)", "not written")

    def add(self, outcome: str, message: str | None = None, seconds: float | None = None) -> None:
        """Count one photo's ``outcome`` (one of OUTCOMES), with its one-line message and its time."""
        self.counts[outcome] += 1
        if message:
            self.messages.append(message)
        if seconds is not None:
            self.seconds.append(seconds)

    def line(self) -> str:
        """e.g. "3 done, 0 no face, ...; 1.08 s per photo (median of 3; the first 1.31 s)"."""
        text = ", ".join(f"{self.counts[o]} {o}" for o in self.OUTCOMES)
        if self.seconds:
            text += (f"; {statistics.median(self.seconds):.3g} s per photo (median of {len(self.seconds)}; "
                     f"the first {self.seconds[0]:.3g} s)")
        return text


def iter_inputs(paths: Iterable[str | os.PathLike], recursive: bool = False
                ) -> Iterator[tuple[Path, Path]]:
    """(photo, its name) for each path: a file as given, named by its file name; a folder's photos
    (its tree with ``recursive``), named by their path under the folder. Missing paths are yielded
    too so the caller reports them in order."""
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            yield path, Path(path.name)
            continue
        found = path.rglob("*") if recursive else path.iterdir()
        for file in sorted(f for f in found if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES):
            yield file, file.relative_to(path)


def predict_paths(estimator: NormalEstimator, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                  recursive: bool = False, all_faces: bool = False, overwrite: bool = False,
                  progress: bool = True, aligned: bool = False) -> BatchSummary:
    """Predict and write every photo of ``paths`` into ``out_dir/<stem>/`` (its name without the
    suffix; hffne_lib.data.images.output_stems keeps photos whose names clash apart); one bad input
    never stops the batch: it is counted and gets a one-line message in the summary. ``aligned`` as
    for ``predict_image``."""
    summary = BatchSummary()
    inputs = list(iter_inputs(paths, recursive))
    stems = output_stems([name for _, name in inputs])
    for (path, _), stem in tqdm(zip(inputs, stems), total=len(inputs), desc="faces", unit="image",
                                disable=not progress):
        target = Path(out_dir) / stem
        start = time.perf_counter()
        try:
            if not overwrite:  # before the work; write_prediction checks the face files too
                check_absent(target / name for name in IMAGE_OUTPUTS)
            image = load_image(path)
        except OutputExistsError as err:
            summary.add("skipped (exists)", f"{path}: {err}")
            continue
        except ValueError as err:
            summary.add("unreadable", str(err))
            continue
        try:
            prediction = predict_image(estimator, image, all_faces, aligned=aligned)
        except NoFaceError as err:
            summary.add("no face", f"{path}: {err}")
            continue
        try:
            write_prediction(prediction, target, overwrite)
        except OutputExistsError as err:
            summary.add("skipped (exists)", f"{path}: {err}")
        except (OSError, ValueError) as err:
            summary.add("not written", f"{path}: cannot write {target} ({getattr(err, 'strerror', None) or err})")
        else:
            summary.add("done", seconds=time.perf_counter() - start)
    return summary
