"""Evaluate an estimator on a split: coarse exemplar vs refined, whole face and detail region.

    result = evaluate(estimator, FaceNormalDataset(root, "wild_test"))
    result.summary      # rows (stage, region): mean, std, images, <20, <25, <30 (hffne_lib.metrics)
    result.per_image    # one row per (image, stage, region): mean angular error and threshold shares

Errors are angles in degrees against the split's "normal" (for lab splits the photometric-stereo
ground truth; pass ``target="normal_exact"`` for the exact one), over the face mask ("face") and
over the mask AND the detail mask ("detail"). BEYOND THE PAPER, region "fine" measures the
detail alone in that same region: ``metrics.fine_band_error`` (the prediction's low frequencies
swapped for the truth's, Gaussian sigma = side * FINE_BAND_SIGMA), so a global shape error
does not hide whether wrinkles were recovered. Its reference is stage "detail-free truth" (the
truth itself, low-passed): a smooth prediction with a perfect shape scores that, so a stage
recovers detail only when its "fine" error is below the reference's; above it, the stage adds
wrong high frequencies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .filters import low_pass
from .metrics import DEFAULT_THRESHOLDS, FINE_BAND_SIGMA, fine_band_error, image_errors, per_image_table, summarize_errors
from .pipeline import NormalEstimator

STAGES = ("coarse", "refined")
#: Reference rows: the truth low-passed by the fine band's Gaussian (see the module docstring).
DETAIL_FREE = "detail-free truth"
REGIONS = ("face", "detail", "fine")


@dataclass
class Evaluation:
    """Summary rows (stage, region) and per-image rows of one split."""

    summary: pd.DataFrame
    per_image: pd.DataFrame


def evaluate(estimator: NormalEstimator, dataset: Dataset, batch_size: int = 16, target: str = "normal",
             progress: bool = True, name: str = "") -> Evaluation:
    """Angular errors of the coarse exemplar and the refined normals on every item of ``dataset``
    (and of the DETAIL_FREE reference).

    Items need "gray" (1 x H x W), ``target`` (3 x H x W), "mask" and "detail_mask" (1 x H x W).
    Batched and gradient-free; images whose region is empty are left out of that region's rows.
    """
    errors: dict[tuple[str, str], list[torch.Tensor]] = {(s, r): [] for s in (*STAGES, DETAIL_FREE) for r in REGIONS}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc=f"evaluate {name}".strip(), disable=not progress):
        gray = batch["gray"]
        truth = batch[target]
        face = batch["mask"].bool()
        detail = face & batch["detail_mask"].bool()
        sigma = gray.shape[-1] * FINE_BAND_SIGMA
        coarse = estimator.coarse(gray).cpu()
        outputs = {"coarse": coarse, "refined": estimator.refine(gray, coarse).cpu(),
                   DETAIL_FREE: low_pass(truth, face, sigma)}
        for stage, pred in outputs.items():
            errors[stage, "face"] += image_errors(pred, truth, face)
            errors[stage, "detail"] += image_errors(pred, truth, detail)
            errors[stage, "fine"] += image_errors(pred, truth, detail, fine_band_error(pred, truth, face, sigma))

    rows, tables = [], []
    for (stage, region), per_image in errors.items():
        row = summarize_errors(per_image, DEFAULT_THRESHOLDS)
        rows.append(pd.concat([pd.Series({"split": name, "stage": stage, "region": region}), row]))
        table = per_image_table(per_image, DEFAULT_THRESHOLDS)
        tables.append(table.assign(split=name, stage=stage, region=region).rename_axis("image").reset_index())
    return Evaluation(pd.DataFrame(rows).reset_index(drop=True), pd.concat(tables, ignore_index=True))


def evaluate_splits(estimator: NormalEstimator, datasets: dict[str, Dataset], batch_size: int = 16,
                    target: str = "normal", progress: bool = True) -> Evaluation:
    """``evaluate`` on several named datasets, rows stacked (a "split" column tells them apart)."""
    parts = [evaluate(estimator, data, batch_size, target, progress, name) for name, data in datasets.items()]
    return Evaluation(pd.concat([p.summary for p in parts], ignore_index=True),
                      pd.concat([p.per_image for p in parts], ignore_index=True))


def compare(evaluations: dict[str, Evaluation], stages: Iterable[str] = STAGES, column: str = "mean") -> pd.DataFrame:
    """One wide table: rows (split, region), a column per (run, stage) holding ``column``."""
    parts = []
    for run, evaluation in evaluations.items():
        table = evaluation.summary[evaluation.summary["stage"].isin(list(stages))]
        parts.append(table.assign(run=run))
    long = pd.concat(parts, ignore_index=True)
    return long.pivot_table(index=["split", "region"], columns=["run", "stage"], values=column)
