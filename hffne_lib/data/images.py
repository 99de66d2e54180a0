"""Image loading: every kind of file a user may have, one function, one-line errors."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from ..files import replaced_atomically

#: File suffixes treated as images when scanning folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")

_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Any JPEG, PNG, WebP, TIFF or BMP (8 or 16 bit; grey, RGB or RGBA, alpha dropped; EXIF
    orientation applied) -> H x W x 3 float32 RGB in [0, 1].

    Raises a one-line ValueError naming the file and the problem: missing, unreadable, empty,
    truncated, not an image, or one the decoder refuses (e.g. too many pixels)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not data:
        raise ValueError(f"{path}: empty file")
    kind = _format(data)
    if kind is None:
        raise ValueError(f"{path}: not an image (unknown format)")
    if kind == "JPEG" and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9") and _jpeg_truncated(data):
        raise ValueError(f"{path}: truncated JPEG (its image data ends early)")
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as err:   # e.g. a header declaring more pixels than OpenCV allows
        reason = next((line for line in str(err).splitlines() if line.strip()), "refused")
        raise ValueError(f"{path}: {kind} the decoder refuses ({reason.strip()[:160]})") from None
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if image is None or image.size == 0:
        raise ValueError(f"{path}: truncated or corrupt {kind} data")
    if image.ndim == 3:
        image = image[..., 2::-1]                 # OpenCV's BGR(A) -> RGB
    if np.issubdtype(image.dtype, np.floating):
        image = np.clip(image, 0.0, 1.0)          # float TIFFs may overshoot
    try:
        return as_rgb(image)
    except ValueError as err:                     # NaN in a float TIFF, say
        raise ValueError(f"{path}: {err}") from None


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An image array -> H x W x 3 float32 RGB in [0, 1]. Grey (H x W or H x W x 1) is repeated,
    RGBA's alpha dropped, integers divided by their type's maximum (uint8 by 255); floats must be
    in [0, 1] already. Anything else raises a one-line ValueError saying what was expected."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H x W grey, H x W x 3 RGB or H x W x 4 RGBA image, got shape {image.shape}")
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
    if np.issubdtype(image.dtype, np.integer) and not np.issubdtype(image.dtype, np.signedinteger):
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected an unsigned integer or float image, got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("a float image must hold finite values, this one has NaN or infinite ones")
    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if low < 0.0 or high > 1.0:
        raise ValueError(f"a float image must be in [0, 1], got values from {low:.3g} to {high:.3g}; "
                         f"divide an 8-bit one by 255 or pass it as uint8")
    return image.astype(np.float32, copy=False)


def _jpeg_truncated(data: bytes) -> bool:
    """Whether a JPEG that does not end in its end-of-image marker lacks image data (a cut-off
    download), rather than carrying data after it (a phone's motion photo): Pillow tells them
    apart, OpenCV decodes both, the first with grey rows and no error."""
    from io import BytesIO

    from PIL import Image
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
    except OSError:
        return True
    return False


def list_files(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files under ``folder`` (recursively) whose suffix is one of ``suffixes`` (any case), sorted.
    A ``folder`` that is not one raises FileNotFoundError (one line)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (IMAGE_SUFFIXES, any case) directly in ``folder``, not its sub-folders, sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def output_stems(relatives: Sequence[Path]) -> list[Path]:
    """The stem of each relative input path's outputs, in order and all different: the path without
    its suffix; the suffix kept where two inputs share that stem (a.jpg and a.png -> a_jpg, a_png);
    then a number where they still clash (a/me.jpg and b/me.jpg given as files -> me_jpg, me_jpg_2)."""
    sharing = Counter(relative.with_suffix("") for relative in relatives)
    stems: list[Path] = []
    taken: set[Path] = set()
    for relative in relatives:
        stem = relative.with_suffix("")
        if sharing[stem] > 1:
            stem = relative.with_name(f"{relative.stem}_{relative.suffix.lstrip('.').lower()}")
        unique, number = stem, 1
        while unique in taken:
            number += 1
            unique = stem.with_name(f"{stem.name}_{number}")
        stems.append(unique)
        taken.add(unique)
    return stems


def write_report(report: pd.DataFrame, path: Path) -> None:
    """A folder preparation's report.csv, written atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:
        report.to_csv(tmp, index=False)


def _format(data: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (H x W or H x W x C) -> uint8, rounded."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB (H x W x 3) or grey (H x W) uint8 or float [0, 1] image; format by suffix."""
    image = to_uint8(image) if image.dtype != np.uint8 else image
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"{path}: could not write the image")
