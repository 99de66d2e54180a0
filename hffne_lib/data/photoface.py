"""Photoface-style captures (four grey images under known lights) to a lab data set.

Layout (PhotofaceLayout, every name a parameter): one folder per capture, anywhere under the
root, holding the images ``im0.*`` .. ``im3.*`` and ``light.txt`` with one light direction per
image, one "x y z" row each (commas allowed, # comments), in the project's camera axes (x right,
y up, z towards the camera). A capture's subject is the first folder of its path under the
root (Photoface: root/<subject>/<session>/). Photoface's own distribution gives each session's
lights as zenith and azimuth angles (its LightSource.m): write them as light.txt rows
``sin(zenith) cos(azimuth)  sin(zenith) sin(azimuth)  cos(zenith)`` after checking the azimuth's zero
and direction on one capture (a wrong sign mirrors the stereo normals: check that the nose's
normals turn towards the side its brighter image is lit from).

``prepare_photoface`` writes the same shard format as the synthetic benchmark (splits
lab_train and lab_test, so FaceNormalDataset reads it): faces cropped as Cross-modal does
(Haar box x 1.2, 256 x 256), ground truth by least-squares photometric stereo, a mask from the
face ellipse (``faces.face_mask``, as for photos) and the stereo albedo; seeded random whole subjects holding at least
``test_fraction`` of the captures are the test split, listed in lab_test.txt (and the rest in lab_train.txt). Real captures have
no separate exact normals: normal_exact repeats the stereo normals and detail_mask is empty.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..conventions import rgb_to_gray
from ..files import write_text_atomically
from .faces import crop_face, detect_faces, face_mask
from .images import load_image
from .photometric import photometric_stereo
from .prepared import REPORT, build_from_chunks


@dataclass(frozen=True)
class PhotofaceLayout:
    """images: file name pattern with {k} for the image index (glob wildcards allowed);
    lights: the light file's name; count: images per capture."""

    images: str = "im{k}.*"
    lights: str = "light.txt"
    count: int = 4

    def __post_init__(self) -> None:
        if self.count != 4:
            raise ValueError(f"a Photoface capture has 4 images (the lab items are one per light), got count={self.count}")


def find_captures(root: str | os.PathLike, layout: PhotofaceLayout = PhotofaceLayout()) -> list[Path]:
    """Capture folders under root (those holding image 0 and the light file), sorted."""
    root = Path(root)
    return sorted({p.parent for p in root.rglob(layout.images.format(k=0)) if (p.parent / layout.lights).is_file()})


def load_photoface_capture(folder: str | os.PathLike,
                           layout: PhotofaceLayout = PhotofaceLayout()) -> tuple[np.ndarray, np.ndarray]:
    """One capture -> (grey images K x H x W float32 in [0, 1], light directions K x 3 unit).
    One-line ValueError for a missing image, a bad light file or mismatched sizes."""
    folder = Path(folder)
    images = []
    for k in range(layout.count):
        matches = sorted(folder.glob(layout.images.format(k=k)))
        if not matches:
            raise ValueError(f"{folder}: no image matching {layout.images.format(k=k)}")
        rgb = torch.from_numpy(load_image(matches[0])).permute(2, 0, 1)[None]
        images.append(rgb_to_gray(rgb)[0, 0].numpy())
    if len({im.shape for im in images}) != 1:
        raise ValueError(f"{folder}: the {layout.count} images differ in size")
    try:
        text = (folder / layout.lights).read_text().replace(",", " ")
        lights = np.loadtxt(text.splitlines(), comments="#", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / layout.lights}: unreadable light file ({error})") from None
    if lights.shape != (layout.count, 3):
        raise ValueError(f"{folder / layout.lights}: expected {layout.count} rows of x y z, got shape {lights.shape}")
    if not (np.linalg.norm(lights, axis=1) > 1e-6).all():
        raise ValueError(f"{folder / layout.lights}: a light direction of zero length (rows {lights.tolist()})")
    return np.stack(images), lights / np.linalg.norm(lights, axis=1, keepdims=True)


def process_capture(images: np.ndarray, lights: np.ndarray, size: int = 256, detect: bool = True) -> dict:
    """Crop, photometric stereo and mask of one capture.

    images K x H x W, lights K x 3 -> images K x size x size, lights K x 3, normal 3 x size x size,
    albedo 1 x size x size, mask 1 x size x size (bool). With ``detect`` the face is found on the mean
    image and cropped (ValueError if none); without, the images are taken as face crops already
    and only resized. The mask is the stereo albedo above 25% of its 99th percentile, within an
    the face ellipse of ``faces.face_mask`` when detected (as for photos)."""
    stack = np.moveaxis(images, 0, -1).astype(np.float32)                 # H x W x K
    if detect:
        boxes = detect_faces(np.repeat(stack.mean(-1, keepdims=True), 3, axis=2))
        if not boxes:
            raise ValueError("no face found")
        stack, _ = crop_face(stack, boxes[0], size)
    else:
        stack = torch.nn.functional.interpolate(torch.from_numpy(stack).permute(2, 0, 1)[None], size=(size, size),
                                                mode="area")[0].permute(1, 2, 0).numpy()
    crops = torch.from_numpy(np.ascontiguousarray(np.moveaxis(stack.reshape(size, size, -1), -1, 0)))
    normal, albedo = photometric_stereo(crops, lights)
    mask = albedo > 0.25 * torch.quantile(albedo.flatten(), 0.99)
    if detect:
        mask &= torch.from_numpy(face_mask(size))[None]
    return {"images": crops, "lights": torch.as_tensor(lights, dtype=torch.float32), "normal": normal * mask,
            "albedo": albedo.clamp(0, 1) * mask, "mask": mask}


def prepare_photoface(root: str | os.PathLike, target: str | os.PathLike, layout: PhotofaceLayout = PhotofaceLayout(),
                      size: int = 256, test_fraction: float = 0.2, seed: int = 0, detect: bool = True,
                      shard_size: int = 32, progress: bool = True) -> dict:
    """Every capture under ``root`` to a lab data set in ``target`` (see the module doc);
    returns its manifest. Idempotent and resumable like build_benchmark (``prepared.build_from_chunks``);
    captures that cannot be read or show no face are reported in target/report.csv (capture, split,
    status, message) and left out, never fatal; lab_train.txt and lab_test.txt list the captures used.
    One-line ValueErrors: no captures, fewer than two subjects (the root one folder too high?), or a
    split left empty."""
    root, target = Path(root), Path(target)
    captures = find_captures(root, layout)
    if not captures:
        raise ValueError(f"{root}: no capture folders with {layout.images.format(k=0)} and {layout.lights}")
    relative = [str(c.relative_to(root)) for c in captures]
    subject_of = [_subject(r) for r in relative]
    subjects = sorted(set(subject_of))
    if len(subjects) < 2:
        raise ValueError(f"{root}: all {len(captures)} captures belong to one subject ({subjects[0]!r}, the first folder "
                         "under the root); give the folder that holds one folder per subject")
    settings = {"source": "photoface", "root": str(root.resolve()), "captures": relative, "layout": asdict(layout),
                "size": size, "test_fraction": test_fraction, "seed": seed, "detect": detect,
                "test_split": "by subject"}
    test = test_captures(subject_of, test_fraction, seed)

    def make_shard(chunk: Sequence[int]) -> tuple[dict[str, np.ndarray] | None, list[dict]]:
        samples, rows = [], []
        for i in chunk:
            row = {"capture": relative[i], "split": "lab_test" if i in test else "lab_train", "status": "ok", "message": ""}
            try:
                sample = process_capture(*load_photoface_capture(captures[i], layout), size=size, detect=detect)
            except ValueError as error:
                rows.append({**row, "status": "failed", "message": str(error)})
                continue
            sample["identity"] = subjects.index(subject_of[i])
            samples.append(sample)
            rows.append(row)
        return (_pack_captures(samples) if samples else None), rows

    chunks = []
    for split in ("lab_train", "lab_test"):
        chosen = [i for i in range(len(captures)) if (i in test) == (split == "lab_test")]
        chunks += [(split, chosen[k:k + shard_size]) for k in range(0, len(chosen), shard_size)]
    if {split for split, _ in chunks} != {"lab_train", "lab_test"}:
        raise ValueError(f"test_fraction={test_fraction} leaves {'lab_train' if test else 'lab_test'} empty with "
                         f"{len(subjects)} subjects; choose a fraction that splits them")
    manifest = build_from_chunks(target, settings, chunks, make_shard, ["capture", "split", "status", "message"],
                                 "photoface", progress)
    report = pd.read_csv(target / REPORT, keep_default_na=False)
    for split in ("lab_train", "lab_test"):
        used = report[(report["split"] == split) & (report["status"] == "ok")]["capture"]
        write_text_atomically(target / f"{split}.txt", "".join(f"{capture}\n" for capture in used))
    return manifest


def test_captures(subject_of: list[str], fraction: float, seed: int) -> set[int]:
    """Indices of the test captures: whole subjects, drawn in a seeded random order until they hold
    at least ``fraction`` of the captures, so no face is both trained on and tested on."""
    subjects = sorted(set(subject_of))
    wanted, test = round(fraction * len(subject_of)), set()
    for k in np.random.default_rng(seed).permutation(len(subjects)):
        if len(test) >= wanted:
            break
        test |= {i for i, subject in enumerate(subject_of) if subject == subjects[k]}
    return test


def _subject(capture: str) -> str:
    """The subject of a capture path relative to the root: its first folder (or itself)."""
    parts = Path(capture).parts
    return parts[0] if len(parts) > 1 else capture


def _pack_captures(samples: list[dict]) -> dict[str, np.ndarray]:
    """Shard arrays in the synthetic lab format (see benchmark.pack_samples)."""
    stack = lambda key: torch.stack([s[key] for s in samples]).numpy()
    normal = stack("normal").astype(np.float16)
    return {"identity": np.array([s["identity"] for s in samples], dtype=np.int64),
            "images": np.round(stack("images") * 255).astype(np.uint8), "lights": stack("lights"),
            "normal": normal, "normal_exact": normal, "mask": stack("mask"), "detail_mask": np.zeros_like(stack("mask")),
            "albedo": np.round(stack("albedo") * 255).astype(np.uint8), "pose": np.zeros((len(samples), 3), np.float32)}
