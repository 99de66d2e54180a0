"""Evaluate an estimator on a split: coarse exemplar vs refined, whole face and detail region.

    result = evaluate(estimator, FaceNormalDataset(root, "wild_test"))
    result.summary      # rows (stage, region): mean, std, images, <20, <25, <30 (hffne_lib.metrics)
    result.per_image    # one row per (image, stage, region): mean angular error and threshold shares

Errors are angles in degrees against the split's "normal" (for lab splits the photometric-stereo
ground truth; pass ``target="normal_exact"`` for the exact one), over the face mask ("face") and
over the mask AND the detail mask ("detail").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .metrics import DEFAULT_THRESHOLDS, image_errors, per_image_table, summarize_errors
from .pipeline import NormalEstimator

STAGES = ("coarse", "refined")
REGIONS = ("face", "detail")


@dataclass
class Evaluation:
    """Summary rows (stage, region) and per-image rows of one split."""

    summary: pd.DataFrame
    per_image: pd.DataFrame


def evaluate(estimator: NormalEstimator, dataset: Dataset, batch_size: int = 16, target: str = "normal",
             progress: bool = True, name: str = "") -> Evaluation:
    """Angular errors of the coarse exemplar and the refined normals on every item of ``dataset``.

    Items need "gray" (1 x H x W), ``target`` (3 x H x W), "mask" and "detail_mask" (1 x H x W).
    Batched and gradient-free; images whose region is empty are left out of that region's rows.
    """
    errors: dict[tuple[str, str], list[torch.Tensor]] = {(s, r): [] for s in STAGES for r in REGIONS}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc=f"evaluate {name}".strip(), disable=not progress):
        gray = batch["gray"]
        truth = batch[target]
        face = batch["mask"].bool()
        regions = {"face": face, "detail": face & batch["detail_mask"].bool()}
        coarse = estimator.coarse(gray).cpu()
        outputs = {"coarse": coarse, "refined": estimator.refine(gray, coarse).cpu()}
        for stage, pred in outputs.items():
            for region, mask in regions.items():
                errors[stage, region] += image_errors(pred, truth, mask)

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
