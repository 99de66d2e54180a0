"""Agreement of our predictions with a folder of reference normal maps (e.g. another model's).

    table, overall, pairs, problems = compare_folders("out/pred", "refs")   # per image, the whole set
    figure = comparison_figure(pairs, table, images_dir="photos")             # input | ours | theirs

Predictions are ``hffne predict`` output folders: ``<pred_dir>/<stem>/image_normals.npy`` and
``image_mask.png`` (normals on the photo's frame). References are RGB-encoded PNGs with the same
stems and size, decoded as x / 255 * 2 - 1 then renormalised (hffne_lib.conventions). The
difference is measured inside our face mask, plain and after a per-image mean-offset correction
(the reference shifted by the difference of the two masked mean normals, then renormalised),
which removes a global bias such as the one a min-max rescaled encoding leaves. Beside them, the
no-skill floor: a constant frontal normal scored the same offset-corrected way, i.e. how far the
reference strays from its own mean direction; agreement at that level says nothing.
This is agreement with a peer, not accuracy: neither side is ground truth.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from .conventions import FRONTAL, from_uint8_image, normalize, to_uint8_image
from .metrics import image_errors, summarize_errors
from .data.images import IMAGE_SUFFIXES, image_files

#: Column names of the measurements: ours plain, ours offset-corrected, a constant frontal normal
#: offset-corrected (the no-skill floor).
PLAIN, CORRECTED, NO_SKILL = "mean_deg", "mean_deg_offset_corrected", "constant_normal_offset_corrected"


@dataclass
class Pair:
    """One image: our normals and the reference's (3 x H x W unit), our face mask (H x W bool)."""

    name: str
    ours: torch.Tensor
    theirs: torch.Tensor
    mask: np.ndarray


def load_reference(path: str | os.PathLike) -> torch.Tensor:
    """An RGB-encoded normal map file -> 3 x H x W unit normals."""
    with Image.open(path) as image:
        return from_uint8_image(np.asarray(image.convert("RGB")))


def load_prediction(folder: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray]:
    """``hffne predict``'s photo-frame outputs -> (3 x H x W normals, H x W bool mask)."""
    folder = Path(folder)
    normals = torch.from_numpy(np.load(folder / "image_normals.npy")).permute(2, 0, 1)
    with Image.open(folder / "image_mask.png") as mask:
        return normals, np.asarray(mask) > 127


def offset_corrected(theirs: torch.Tensor, ours: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """``theirs`` shifted so its mean normal over the mask equals ours, renormalised (3 x H x W)."""
    inside = torch.from_numpy(mask)
    shift = ours[:, inside].mean(dim=1) - theirs[:, inside].mean(dim=1)
    return normalize((theirs + shift[:, None, None])[None])[0]


def load_pairs(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> tuple[list[Pair], list[str]]:
    """Pairs for every reference map (sorted by name) that has a prediction of the same size,
    and one line per reference that has none, does not fit or cannot be read."""
    pairs, problems = [], []
    refs = image_files(ref_dir)
    for ref in refs:
        folder = Path(pred_dir) / ref.stem
        if not (folder / "image_normals.npy").is_file():
            problems.append(f"{ref.name}: no prediction in {folder}")
            continue
        try:
            ours, mask = load_prediction(folder)
            theirs = load_reference(ref)
        except (OSError, ValueError) as err:    # a truncated or foreign file; PIL's errors are OSErrors
            problems.append(f"{ref.name}: unreadable ({type(err).__name__}: {err})")
            continue
        if ours.shape != theirs.shape:
            problems.append(f"{ref.name}: reference is {tuple(theirs.shape[1:])}, prediction {tuple(ours.shape[1:])}")
        elif not mask.any():
            problems.append(f"{ref.name}: empty face mask")
        else:
            pairs.append(Pair(ref.stem, ours, theirs, mask))
    return pairs, problems


def pair_errors(ours: torch.Tensor, theirs: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """Angular differences (degrees) of the mask pixels: 3 x H x W, 3 x H x W, H x W -> P."""
    return image_errors(ours[None], theirs[None], torch.from_numpy(mask)[None, None])[0]


def constant_normal(like: torch.Tensor) -> torch.Tensor:
    """The frontal normal (conventions.FRONTAL) everywhere: 3 x H x W like ``like``."""
    return torch.tensor(FRONTAL, dtype=like.dtype)[:, None, None].expand_as(like)


def compare_pairs(pairs: list[Pair]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image table (pixels, mean angular difference in degrees: PLAIN, CORRECTED, NO_SKILL) and
    the overall table (one row per measurement: mean and std of the image means, % of all pixels
    under 20/25/30 degrees)."""
    if not pairs:
        raise ValueError("nothing to compare: no reference has a matching prediction")
    errors = {
        PLAIN: [pair_errors(p.ours, p.theirs, p.mask) for p in pairs],
        CORRECTED: [pair_errors(p.ours, offset_corrected(p.theirs, p.ours, p.mask), p.mask) for p in pairs],
        NO_SKILL: [pair_errors(constant_normal(p.ours), offset_corrected(p.theirs, constant_normal(p.ours), p.mask),
                               p.mask) for p in pairs],
    }
    table = pd.DataFrame({"pixels": [int(p.mask.sum()) for p in pairs],
                          **{name: [e.mean().item() for e in per_image] for name, per_image in errors.items()}},
                         index=pd.Index([p.name for p in pairs], name="image"))
    overall = pd.DataFrame([summarize_errors(per_image, name=name) for name, per_image in errors.items()])
    return table, overall


def compare_folders(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike
                    ) -> tuple[pd.DataFrame, pd.DataFrame, list[Pair], list[str]]:
    """``load_pairs`` then ``compare_pairs``: (per-image table, overall table, pairs, problems)."""
    pairs, problems = load_pairs(pred_dir, ref_dir)
    return (*compare_pairs(pairs), pairs, problems)


def find_image(images_dir: str | os.PathLike, stem: str) -> Path | None:
    """The photo named ``stem`` (any supported suffix) in ``images_dir``, or None."""
    matches = [p for p in sorted(Path(images_dir).glob(f"{stem}.*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    return matches[0] if matches else None


def comparison_figure(pairs: list[Pair], table: pd.DataFrame, images_dir: str | os.PathLike | None = None
                      ) -> Figure:
    """One row per pair: input photo (when ``images_dir`` has it) | ours (masked) | theirs, with the
    plain and offset-corrected mean differences and the no-skill floor in the row's title."""
    figure = Figure(figsize=(7.5, 2.6 * len(pairs)), layout="constrained")
    axes = figure.subplots(len(pairs), 3, squeeze=False)
    for row, pair in zip(axes, pairs):
        photo = find_image(images_dir, pair.name) if images_dir is not None else None
        if photo is not None:
            with Image.open(photo) as image:
                row[0].imshow(np.asarray(image.convert("RGB")))
        row[1].imshow(to_uint8_image(pair.ours))
        row[2].imshow(to_uint8_image(pair.theirs))
        stats = table.loc[pair.name]
        row[1].set_title(f"{pair.name}: {stats[PLAIN]:.1f} deg, offset-corrected {stats[CORRECTED]:.1f} deg "
                         f"(constant normal {stats[NO_SKILL]:.1f})", fontsize=8, loc="left")
        for ax, label in zip(row, ("input", "ours", "reference")):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=8)
    return figure
