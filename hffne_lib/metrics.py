"""Angular-error metrics (as the paper reports them: mean +- std across images, share of pixels under thresholds)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from .conventions import normalize
from .filters import low_pass

DEFAULT_THRESHOLDS = (20.0, 25.0, 30.0)

#: Shorter normals inside a mask have no direction to measure (``check_measurable``).
MIN_NORMAL_LENGTH = 1e-6

#: Fine band of the fine-band error: Gaussian sigma as a fraction of the image side
#: (2 px at 128 px, 4 px at 256 px): wrinkles, brows and pores are narrower than this.
FINE_BAND_SIGMA = 1.0 / 64


def angular_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel angle in degrees between normal maps: B x 3 x H x W, B x 3 x H x W -> B x H x W.

    Both inputs are renormalised first, so unnormalised predictions are measured fairly.
    """
    pred = normalize(pred.double())
    target = normalize(target.double())
    cosine = (pred * target).sum(dim=1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine)).float()


def fine_band_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    sigma: float) -> torch.Tensor:
    """BEYOND THE PAPER. Per-pixel angle (degrees) of the prediction's fine detail alone:
    ``pred`` with its low frequencies swapped for the target's, against the target.

    pred, target: B x 3 x H x W; mask: B x 1 x H x W; sigma in px -> B x H x W. A prediction
    with the right detail scores ~0 whatever its global shape; a smooth one scores the
    detail's own angle, so lower than that means detail was recovered.
    """
    pred = normalize(pred.double())
    target = target.double()
    swapped = pred - low_pass(pred, mask, sigma) + low_pass(target, mask, sigma)
    return angular_error(swapped, target)


def image_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 errors: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Angular errors (degrees) of the mask pixels, one 1-D tensor per image.

    pred, target: B x 3 x H x W; mask: B x 1 x H x W or B x H x W (bool or 0/1). ``errors``
    (B x H x W) replaces the plain angular error, e.g. by ``fine_band_error``. A one-line
    ValueError when a mask pixel of either map is NaN, infinite or zero-length (no angle to measure).
    """
    errors = angular_error(pred, target) if errors is None else errors
    mask = mask.reshape(errors.shape).bool()
    for name, normals in (("prediction", pred), ("ground truth", target)):
        check_measurable(normals, mask, name)
    return [errors[i][mask[i]] for i in range(errors.shape[0])]


def check_measurable(normals: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    """One-line ValueError naming ``name`` when a pixel of ``mask`` (B x H x W bool) holds a NaN,
    infinite or zero-length vector of ``normals`` (B x 3 x H x W): the table would hide it as NaN or 90 deg."""
    # a sum of squares, not .norm(dim=1): torch's CPU norm over dim 1 is ~9x slower (hffne_lib.conventions.normalize)
    length = normals.detach().double().square().sum(dim=1).sqrt()[mask]
    broken = int((~torch.isfinite(length)).sum())
    if broken:
        raise ValueError(f"the {name} is NaN or infinite at {broken} of {length.numel()} face pixels: nothing to "
                         "measure there (a diverged model or damaged data)")
    empty = int((length < MIN_NORMAL_LENGTH).sum())
    if empty:
        raise ValueError(f"the {name} has zero-length normals at {empty} of {length.numel()} face pixels: their angle "
                         "is undefined (a mask larger than the normal map's face?)")


def summarize_errors(per_image: Sequence[torch.Tensor], thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                     name: str = "") -> pd.Series:
    """One table row from per-image error vectors: mean (of image means), std across images,
    and % of all pixels under each threshold. Images with no mask pixels are skipped."""
    per_image = [e for e in per_image if e.numel() > 0]
    if not per_image:
        raise ValueError("no pixels to measure: every mask is empty")
    means = torch.stack([e.double().mean() for e in per_image])
    pixels = torch.cat(per_image).double()
    row = {"mean": means.mean().item(),
           "std": means.std(unbiased=False).item() if len(per_image) > 1 else 0.0,
           "images": len(per_image)}
    for t in thresholds:
        row[f"<{t:g}"] = 100.0 * (pixels < t).double().mean().item()
    return pd.Series(row, name=name)


def evaluate_set(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, name: str = "") -> pd.Series:
    """Table row for a whole set given at once (B x 3 x H x W, B x 3 x H x W, B x 1 x H x W)."""
    return summarize_errors(image_errors(pred, target, mask), thresholds, name)


def per_image_table(per_image: Sequence[torch.Tensor], thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image (its mean error and % of its pixels under each threshold)."""
    names = names or [str(i) for i in range(len(per_image))]
    rows = [summarize_errors([e], thresholds, name=n) for e, n in zip(per_image, names) if e.numel() > 0]
    return pd.DataFrame(rows).drop(columns=["std", "images"])
