"""Faces in ordinary photos: offline detection, square crops and the way back.

Detection uses OpenCV's bundled Haar cascade (no network, no weights to fetch). Crops follow
Cross-modal's protocol: the tightest face box, enlarged 1.2 times about its centre to a square,
resized to 256 x 256. Each crop comes with its CropTransform, so a prediction on the crop can
be put back onto the original image with ``uncrop``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..files import check_absent
from .images import list_files, load_image, output_stems, save_image, to_uint8, write_report

CASCADE = "haarcascade_frontalface_default.xml"
#: Enlargement of the detector's box about its centre, to the square crop (Cross-modal's protocol).
CROP_SCALE = 1.2


class DetectorUnavailableError(RuntimeError):
    """This OpenCV build ships no usable Haar cascade (opencv-python 5.x wheels carry none)."""


@dataclass(frozen=True)
class FaceBox:
    """A face's box in image pixels: left x, top y, width w, height h."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return self.w * self.h


@dataclass(frozen=True)
class CropTransform:
    """The similarity from original-image coordinates to crop coordinates, both with pixel edges
    at integers (pixel (r, c) spans [c, c + 1) x [r, r + 1)): crop = scale * original + (tx, ty),
    for a size x size crop."""

    scale: float
    tx: float
    ty: float
    size: int

    @property
    def matrix(self) -> np.ndarray:
        """2 x 3 affine matrix (original -> crop coordinates, pixel edges at integers)."""
        return np.array([[self.scale, 0.0, self.tx], [0.0, self.scale, self.ty]])

    @property
    def warp_matrix(self) -> np.ndarray:
        """``matrix`` as cv2.warpAffine takes it: pixel centres at integers, so the crop's pixel
        centres sample the original where ``matrix`` puts them (not half a pixel off)."""
        shift = 0.5 * (self.scale - 1.0)
        return np.array([[self.scale, 0.0, self.tx + shift], [0.0, self.scale, self.ty + shift]])


def detect_faces(image: np.ndarray, min_size: int = 32, pad: float = 0.2) -> list[FaceBox]:
    """Frontal faces in an RGB image (H x W x 3, uint8 or float in [0, 1]), largest first.

    The image is first padded by ``pad`` x its longer side (edges repeated), so that faces
    filling a tight crop, as in FFHQ or CelebA-HQ, are found too; boxes are in the original's
    pixels and may reach past its borders."""
    gray = cv2.cvtColor(image if image.dtype == np.uint8 else to_uint8(image), cv2.COLOR_RGB2GRAY)
    border = int(pad * max(gray.shape))
    gray = cv2.copyMakeBorder(gray, border, border, border, border, cv2.BORDER_REPLICATE)
    cascade = face_cascade()
    found = cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                     minSize=(min_size, min_size))
    boxes = [FaceBox(float(x - border), float(y - border), float(w), float(h)) for x, y, w, h in np.asarray(found, dtype=float).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: -b.area)


def face_cascade() -> cv2.CascadeClassifier:
    """OpenCV's bundled frontal-face cascade; DetectorUnavailableError (one line) when missing."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    # OpenCV 5 builds may lack the cascade API altogether (seen on a CUDA image's OpenCV)
    cascade = _load_cascade(os.path.join(folder, CASCADE)) if folder and hasattr(cv2, "CascadeClassifier") else None
    if cascade is None or cascade.empty():
        raise DetectorUnavailableError(
            f"OpenCV {cv2.__version__} has no {CASCADE}: install opencv-python-headless<5 (its wheels carry the "
            f"cascade), or give face crops and skip detection (hffne predict --aligned)")
    return cascade


@lru_cache(maxsize=4)
def _load_cascade(path: str) -> cv2.CascadeClassifier:
    """The classifier of a cascade file, read once per process (7 ms a read)."""
    return cv2.CascadeClassifier(path)


def aligned_box(height: int, width: int, scale: float = CROP_SCALE) -> FaceBox:
    """The box whose ``crop_transform`` crop is the whole H x W image (its longer side, centred):
    for photos that are face crops already (FFHQ, CelebA-HQ), in place of detection."""
    side = max(height, width) / scale
    return FaceBox((width - side) / 2, (height - side) / 2, side, side)


def crop_transform(box: FaceBox, size: int = 256, scale: float = CROP_SCALE) -> CropTransform:
    """The transform of a square crop of side scale * max(w, h) centred on the box."""
    side = scale * max(box.w, box.h)
    s = size / side
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return CropTransform(s, size / 2 - s * cx, size / 2 - s * cy, size)


def crop_face(image: np.ndarray, box: FaceBox, size: int = 256, scale: float = CROP_SCALE) -> tuple[np.ndarray, CropTransform]:
    """Square face crop (size x size x C, same dtype; outside the image: edge pixels repeated)
    and its transform. A crop smaller than the face's square is low-passed first (Gaussian sigma
    (1 / scale - 1) / 2 px, as scikit-image's rescale does): a warp alone samples every n-th pixel,
    and skin texture or JPEG noise would alias into what the networks read as detail."""
    transform = crop_transform(box, size, scale)
    matrix = transform.warp_matrix
    if transform.scale < 1:
        sigma = (1.0 / transform.scale - 1.0) / 2
        # only the part of the image the crop reads is blurred (a 12 MP photo: 2.5 ms a face, not 21 ms)
        rows, cols = _crop_window(transform, image.shape, margin=int(np.ceil(4 * sigma)) + 2)
        image = cv2.GaussianBlur(image[rows, cols], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        matrix = matrix + transform.scale * np.array([[0.0, 0.0, cols.start], [0.0, 0.0, rows.start]])
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop.reshape(size, size, *image.shape[2:]), transform


def _crop_window(transform: CropTransform, shape: tuple[int, ...], margin: int) -> tuple[slice, slice]:
    """(rows, cols) of the image (H x W [x C]) that a crop's bilinear samples read, widened by
    ``margin`` pixels and clipped to the image (at least its edge pixel, which edge repetition reads)."""
    inverse = cv2.invertAffineTransform(transform.warp_matrix)
    corners = inverse @ np.array([[0.0, 0.0, 1.0], [transform.size - 1.0, transform.size - 1.0, 1.0]]).T
    window = []
    for low, high, extent in zip(corners.min(axis=1), corners.max(axis=1), (shape[1], shape[0])):
        start = int(np.clip(np.floor(low) - margin, 0, extent - 1))
        window.append(slice(start, int(np.clip(np.floor(high) + 2 + margin, start + 1, extent))))
    cols, rows = window
    return rows, cols


def uncrop(array: np.ndarray, transform: CropTransform, original_shape: tuple[int, ...],
           interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Put a crop-aligned array (size x size or size x size x C; e.g. a normal map made HWC)
    back onto the original image's grid (H x W [x C]); pixels the crop does not cover are 0.
    Normal maps stay valid (the transform has no rotation) but should be renormalised."""
    h, w = original_shape[:2]
    back = cv2.warpAffine(np.asarray(array, dtype=np.float32), transform.warp_matrix, (w, h),
                          flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return back.reshape(h, w, *np.shape(array)[2:])


def face_mask(size: int, scale: float = CROP_SCALE) -> np.ndarray:
    """The face region of a crop: the ellipse inscribed in the detector's box, which the crop
    protocol centres with side ``size / scale``, stretched 15% downwards to reach the chin.
    -> size x size bool."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    half = size / scale / 2.0
    centre = size / 2.0
    return ((cols - centre) / half) ** 2 + ((rows - centre - 0.075 * half) / (1.15 * half)) ** 2 <= 1.0


def check_outside(source: Path, target: Path) -> None:
    """One-line ValueError when ``target`` is ``source`` or lies inside it: the outputs would
    replace photos of the same name, and a second run would take the first one's crops as photos."""
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise ValueError(f"{target} is inside {source}: write the crops to a folder outside the photos")


def crop_folder(source: Path, files: list[Path], size: int, scale: float = CROP_SCALE, aligned: bool = False,
                progress: bool = True, desc: str = "faces") -> Iterator[tuple[dict, np.ndarray | None]]:
    """The largest face of each of ``files`` (under ``source``) cropped by the data-prep protocol:
    (report row, size x size x 3 float crop in [0, 1], or None when the file is unreadable or shows no
    face). A row holds file, status (ok / unreadable / no_face), message, faces found, and for a
    crop the image's height and width, the box x y w h and the transform's scale tx ty (for mapping
    predictions back). ``aligned``: the photos are face crops already (FFHQ, CelebA-HQ), no detection."""
    for file in tqdm(files, desc=desc, unit="image", disable=not progress):
        row = {"file": str(file.relative_to(source)), "status": "ok", "message": "", "faces": 0}
        try:
            image = load_image(file)
        except ValueError as error:
            yield {**row, "status": "unreadable", "message": str(error)}, None
            continue
        boxes = [aligned_box(*image.shape[:2], scale)] if aligned else detect_faces(image)
        row["faces"] = len(boxes)
        if not boxes:
            yield {**row, "status": "no_face", "message": "no face found"}, None
            continue
        crop, transform = crop_face(image, boxes[0], size, scale)
        yield {**row, "height": image.shape[0], "width": image.shape[1], **asdict(boxes[0]),
               **{k: v for k, v in asdict(transform).items() if k != "size"}}, crop


def prepare_face_folder(source: str | os.PathLike, target: str | os.PathLike, size: int = 256, scale: float = CROP_SCALE,
                        progress: bool = True, overwrite: bool = False) -> pd.DataFrame:
    """Crop the largest face of every image under ``source`` (recursively) to
    target/<relative path>.png (a.jpg and a.png beside it: a_jpg.png, a_png.png) and return the
    report (``crop_folder``'s rows and the crop's path) also written, atomically, to
    target/report.csv. Bad files are reported, never fatal. One-line errors: a target inside the
    source (``check_outside``), and, unless ``overwrite``, crops or a report already there."""
    source, target = Path(source), Path(target)
    files = list_files(source)
    check_outside(source, target)
    stems = output_stems([file.relative_to(source) for file in files])
    outputs = [target / stem.with_name(stem.name + ".png") for stem in stems]
    if not overwrite:
        check_absent([target / "report.csv", *outputs], "pass overwrite=True to replace it")
    rows = []
    for (row, crop), out in zip(crop_folder(source, files, size, scale, progress=progress), outputs):
        if crop is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(out, crop)
            row["crop"] = str(out.relative_to(target))
        rows.append(row)
    report = pd.DataFrame(rows, columns=["file", "status", "message", "faces", "crop", "height", "width",
                                         "x", "y", "w", "h", "scale", "tx", "ty"])
    write_report(report, target / "report.csv")
    return report
