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

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .checkpoint import CODE_REVISION, checkpoint_entry
from .config import EVAL_SPLITS, ExperimentConfig, software_note
from .filters import low_pass
from .fitting import FitSettings
from .metrics import DEFAULT_THRESHOLDS, FINE_BAND_SIGMA, fine_band_error, image_errors, per_image_table, summarize_errors
from .official import CheckpointError
from .pipeline import NormalEstimator
from .files import OutputExistsError, check_absent
from .predict import model_resolution, resolve_checkpoints

#: What ``--out`` receives; an earlier evaluation there is kept unless ``--overwrite``.
EVALUATION_FILES = ("evaluation.csv", "evaluation.md", "evaluation.tex", "summary.csv")

STAGES = ("coarse", "refined")
#: BEYOND THE PAPER: the stage of an estimator with fitting settings (hffne_lib.fitting).
FITTED = "fitted"
#: Reference rows: the truth low-passed by the fine band's Gaussian (see the module docstring).
DETAIL_FREE = "detail-free truth"
REGIONS = ("face", "detail", "fine")
#: Stage FITTED is fitted inside the split's face masks: an input the other stages do not get
#: (``hffne predict`` fits inside the face ellipse instead).
FIT_MASK_NOTE = "fitted inside each image's true face mask"


@dataclass
class Evaluation:
    """Summary rows (stage, region) and per-image rows of one split."""

    summary: pd.DataFrame
    per_image: pd.DataFrame


def detail_free(truth: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """The DETAIL_FREE reference: ``truth`` (B x 3 x H x W) low-passed inside ``face`` (B x 1 x H x W)
    by the fine band's Gaussian (sigma = side * FINE_BAND_SIGMA px). Not renormalised."""
    return low_pass(truth, face, truth.shape[-1] * FINE_BAND_SIGMA)


def region_errors(pred: torch.Tensor, truth: torch.Tensor, face: torch.Tensor,
                  detail_mask: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Per-image angular errors (degrees, one 1-D tensor of pixels per image) in each of REGIONS.

    pred, truth: B x 3 x H x W; face, detail_mask: B x 1 x H x W (bool or 0/1).
    """
    face = face.bool()
    detail = face & detail_mask.bool()
    fine = fine_band_error(pred, truth, face, truth.shape[-1] * FINE_BAND_SIGMA)
    return {"face": image_errors(pred, truth, face), "detail": image_errors(pred, truth, detail),
            "fine": image_errors(pred, truth, detail, fine)}


def evaluate(estimator: NormalEstimator, dataset: Dataset, batch_size: int = 16, target: str = "normal",
             progress: bool = True, name: str = "") -> Evaluation:
    """Angular errors of the coarse exemplar and the refined normals (when the estimator has a
    refiner) on every item of ``dataset`` (and of the DETAIL_FREE reference; and stage FITTED when
    ``estimator.fitting`` is set: the exemplar fitted to each image inside its true face mask).

    Items need "gray" (1 x H x W), ``target`` (3 x H x W), "mask" and "detail_mask" (1 x H x W).
    Batched and gradient-free; the errors are computed on the estimator's device (the fine band's
    float64 blurs cost more than the networks on a CPU), then kept on the CPU. Images whose
    region is empty are left out of that region's rows; a region empty in every image has none.
    """
    refined = ["refined"] if estimator.refiner is not None else []
    stages = ("coarse", *refined, *([FITTED] if estimator.fitting else []), DETAIL_FREE)
    errors: dict[tuple[str, str], list[torch.Tensor]] = {(s, r): [] for s in stages for r in REGIONS}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    device = estimator.device
    for batch in tqdm(loader, desc=f"evaluate {name}".strip(), disable=not progress):
        gray = batch["gray"]
        truth, face, detail_mask = (batch[key].to(device) for key in (target, "mask", "detail_mask"))
        face = face.bool()
        coarse = estimator.coarse(gray)
        outputs = {"coarse": coarse, DETAIL_FREE: detail_free(truth, face)}
        if refined:
            outputs["refined"] = estimator.refine(gray, coarse)
        if estimator.fitting:
            outputs[FITTED] = estimator.fit(gray, coarse, face)
        for stage, pred in outputs.items():
            for region, per_image in region_errors(pred, truth, face, detail_mask).items():
                errors[stage, region] += [e.cpu() for e in per_image]

    rows, tables = [], []
    for (stage, region), per_image in errors.items():
        if not any(e.numel() for e in per_image):   # e.g. "detail" on real lab data, which has no detail mask
            continue
        row = summarize_errors(per_image, DEFAULT_THRESHOLDS)
        rows.append(pd.concat([pd.Series({"split": name, "stage": stage, "region": region}), row]))
        table = per_image_table(per_image, DEFAULT_THRESHOLDS)
        tables.append(table.assign(split=name, stage=stage, region=region).rename_axis("image").reset_index())
    return Evaluation(pd.DataFrame(rows).reset_index(drop=True), pd.concat(tables, ignore_index=True))


def check_evaluable(estimator: NormalEstimator, dataset: Dataset, name: str) -> None:
    """One-line ValueError when ``dataset`` cannot measure ``estimator``: photos without ground truth
    (``data.prepare_wild_photos``), or images of another size than it was trained at (its blurs and
    receptive fields are in pixels, so another size measures another model)."""
    if getattr(dataset, "ground_truth", True) is False:
        raise ValueError(f"{name}: photos without ground truth, nothing to measure against (they can train the "
                         "refiner, refine_splits)")
    size, side = model_resolution(estimator), tuple(dataset[0]["gray"].shape[-2:]) if len(dataset) else None
    if side is not None and side != (size, size):
        raise ValueError(f"{name}: images are {side[0]} x {side[1]} px but the model was trained at {size} x {size}: "
                         "evaluate it on data of its resolution (--data-root of its data preset)")


def evaluate_splits(estimator: NormalEstimator, datasets: dict[str, Dataset], batch_size: int = 16,
                    target: str = "normal", progress: bool = True) -> Evaluation:
    """``evaluate`` on several named datasets, rows stacked (a "split" column tells them apart)."""
    parts = [evaluate(estimator, data, batch_size, target, progress, name) for name, data in datasets.items()]
    return Evaluation(pd.concat([p.summary for p in parts], ignore_index=True),
                      pd.concat([p.per_image for p in parts], ignore_index=True))


def main(argv: list[str] | None = None) -> int:
    """``python -m hffne_lib.evaluate``: a trained run on the benchmark's held-out splits. Returns
    the exit code: 0, or 2 with one line for a bad checkpoint, a missing benchmark or an earlier
    evaluation in ``--out`` (kept unless ``--overwrite``)."""
    from .tables import write_tables           # here, not at the top: both modules import this one
    from .train import data_manifest_hash, open_split

    parser = argparse.ArgumentParser(
        prog="python -m hffne_lib.evaluate",
        description="Mean angular errors of a trained run (coarse exemplar, refined, detail-free reference) on the "
                    "benchmark's held-out splits, whole face, detail region and fine band.")
    parser.add_argument("checkpoint", nargs="+", metavar="PATH",
                        help="RUN_DIR, RUN_DIR/<refiner stage>, REFINER.pt, COARSE.pt REFINER.pt, or with "
                             "--fit-steps a coarse checkpoint alone (RUN_DIR/coarse or COARSE.pt)")
    parser.add_argument("--data-root", help="the benchmark (default: the data_root the run was trained with, "
                                            "relative to where it was trained)")
    parser.add_argument("--split-root", action="append", default=[], metavar="SPLIT=DIR",
                        help="read SPLIT from the data set in DIR instead (repeatable), e.g. scans=data/florence_scans "
                             "made by python -m hffne_lib.data --scans")
    parser.add_argument("--splits", nargs="+", default=list(EVAL_SPLITS), choices=EVAL_SPLITS)
    parser.add_argument("--fit-steps", type=int, default=0, metavar="N",
                        help="BEYOND THE PAPER: add stage 'fitted', each exemplar fitted to its image in N Adam "
                             "steps (hffne_lib.fitting; default settings otherwise); 0 (default): off")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", metavar="DIR", help="write evaluation.csv/.md/.tex (means, with provenance) and "
                                                     "summary.csv (every statistic) here")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.out and not args.overwrite:
            check_absent(Path(args.out) / name for name in EVALUATION_FILES)
        coarse_path, refiner_path = resolve_checkpoints(args.checkpoint)
        fitting = FitSettings(steps=args.fit_steps) if args.fit_steps else None
        estimator = NormalEstimator.from_checkpoints(coarse_path, refiner_path, args.device, fitting)
        # the config of the last stage given (checked by the load above)
        cfg = ExperimentConfig.from_saved(checkpoint_entry(refiner_path or coarse_path, "config"))
        cfg.data_root = args.data_root or cfg.data_root
        cfg = cfg.with_split_roots(args.split_root)
        datasets = {split: open_split(cfg, split, build=False) for split in args.splits}
        for split, data in datasets.items():
            check_evaluable(estimator, data, f"{cfg.root_of(split)} {split}")
    except (CheckpointError, FileNotFoundError, OutputExistsError, ValueError) as err:
        print(f"{parser.prog}: {err}", file=sys.stderr)
        return 2
    result = evaluate_splits(estimator, datasets, progress=not args.no_progress)
    means = result.summary.pivot_table(index=["split", "region"], columns="stage", values="mean", sort=False)
    print(means.round(2).to_string())
    if args.out:
        refiner = "no refiner" if refiner_path is None else \
            f"{refiner_path} (iteration {estimator.provenance['refiner_iteration']})"
        meta = {"git revision": CODE_REVISION, "checkpoints": f"{coarse_path} (iteration "
                f"{estimator.provenance['coarse_iteration']}), {refiner}, trained at "
                f"{estimator.provenance['git_revision']}",
                "preset": cfg.name, "device": args.device, "software": software_note(),
                "data manifest hash": data_manifest_hash(cfg, args.splits), **cfg.split_roots_note(args.splits),
                "VGG19 weights": estimator.provenance["vgg_weights"],
                **({"fitted": f"{estimator.fitting.describe()}; {FIT_MASK_NOTE}"} if estimator.fitting else {}),
                "unit": "mean angular error, degrees", "wall time": f"{time.perf_counter() - start:.0f} s"}
        table = means.rename_axis(columns=None).reset_index(level="region")   # split as the index: no tuples
        written = write_tables({"evaluation": table}, args.out, meta)
        result.summary.to_csv(Path(args.out) / "summary.csv", index=False)
        print(f"{parser.prog}: wrote {', '.join(str(p) for p in written)}, {Path(args.out) / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
