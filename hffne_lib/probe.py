"""BEYOND THE PAPER: what a refinement objective rewards, found without a network.

    python -m hffne_lib.probe --preset cpu --run-dir runs/cpu --split wild_test --out results/probe/cpu

Refinement (eq. 10) trains a network so that its output N lowers the objective on average. Here,
for a few held-out faces, N itself is the variable: it starts at the coarse exemplar R and Adam
moves it (N = x / |x|, x free per pixel) to lower the same objective (``train.refinement_objective``)
that a refiner with that config would be trained on. N's errors against the truth then show what
the objective rewards, free of the network's capacity and schedule. If they do not fall below the
exemplar's, no refiner trained on that objective will beat its exemplar; if they do, the limit is
the network or its schedule. A "fine" error under the detail-free reference's means the objective
puts the right detail in the right place (hffne_lib.evaluate).

The oracle variants feed a term something no real photo has, to tell what in the photo misleads
it: the split's true shading (no albedo, highlights or noise), or the photo divided by the split's
true grey albedo (highlights and noise kept). Their rows say so. ``--start detail-free`` is an
oracle too: N starts at (and the reconstruction term anchors to) the detail-free truth, a perfect
exemplar without detail, to tell whether the objective adds the right detail once the low
frequencies are right.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .checkpoint import CODE_REVISION, load_coarse
from .config import ExperimentConfig, get_config
from .conventions import normalize
from .evaluate import DETAIL_FREE, REGIONS, detail_free, region_errors
from .fitting import adam_on_normals
from .losses import RefinementObjective
from .metrics import summarize_errors
from .files import OutputExistsError, check_absent
from .train import add_override_argument, exemplar_checkpoint, open_split, parse_overrides, refinement_objective

EXEMPLAR = "coarse exemplar"
#: What ``--out`` receives; an earlier probe there is kept unless ``--overwrite``.
PROBE_FILES = ("curves.csv", "final.md")
#: Where N starts (``--start``), by name -> the label of its row: the coarse exemplar, or (an oracle)
#: the detail-free truth, which then also stands in for the exemplar in every term.
STARTS = {"exemplar": EXEMPLAR, "detail-free": "detail-free truth as the exemplar (oracle)"}


#: What the image terms see: the photo, or an oracle (for diagnosis only) made from the split's truth.
PHOTO, TRUE_SHADING, OVER_TRUE_ALBEDO = "photo", "true shading", "photo / true albedo"
#: Grey albedo below this is taken as this when the photo is divided by it (dark hair, eyes).
ALBEDO_FLOOR = 0.05


@dataclass(frozen=True)
class Variant:
    """One objective to probe: a label, config overrides (e.g. shading_weight=1.0), and the
    ``image`` its image terms see: PHOTO, or the oracles TRUE_SHADING or OVER_TRUE_ALBEDO."""

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    image: str = PHOTO

    def __post_init__(self) -> None:
        if self.image not in (PHOTO, TRUE_SHADING, OVER_TRUE_ALBEDO):
            raise ValueError(f"variant image must be {PHOTO!r}, {TRUE_SHADING!r} or {OVER_TRUE_ALBEDO!r}, "
                             f"got {self.image!r}")


#: The faithful objective and the options beyond the paper, by the names ``--variants`` takes.
VARIANTS = {
    "faithful": Variant("eq. 10 (release scale 1/65536)"),
    "perceptual-1": Variant("eq. 10, perceptual at scale 1", {"perceptual_scale": 1.0}),
    "shading": Variant("+ HF shading", {"shading_weight": 1.0}),
    "shading-x10": Variant("+ HF shading x10", {"shading_weight": 10.0}),
    "shading-lowpass": Variant("+ HF shading, low-pass reconstruction",
                               {"shading_weight": 1.0, "reconstruction_sigma": 2.0}),
    "shading-oracle": Variant("+ HF shading, true shading as input (oracle)", {"shading_weight": 1.0},
                              image=TRUE_SHADING),
    "shading-robust": Variant("+ HF shading, robust (Geman-McClure, scale 0.01)",
                              {"shading_weight": 1.0, "shading_robust_scale": 0.01}),
    "shading-lowpass-oracle": Variant("+ HF shading, low-pass reconstruction, true shading as input (oracle)",
                                      {"shading_weight": 1.0, "reconstruction_sigma": 2.0}, image=TRUE_SHADING),
    "integrable": Variant("+ integrability 0.1", {"integrability_weight": 0.1}),
    "shading-robust-integrable": Variant("+ HF shading, robust (scale 0.01), + integrability 0.1",
                                         {"shading_weight": 1.0, "shading_robust_scale": 0.01,
                                          "integrability_weight": 0.1}),
    "shading-oracle-integrable": Variant("+ HF shading, + integrability 0.1, true shading as input (oracle)",
                                         {"shading_weight": 1.0, "integrability_weight": 0.1}, image=TRUE_SHADING),
    "shading-albedo-oracle-integrable": Variant(
        "+ HF shading, + integrability 0.1, photo over the true albedo (oracle)",
        {"shading_weight": 1.0, "integrability_weight": 0.1}, image=OVER_TRUE_ALBEDO),
    "shading-robust-integrable-presmooth": Variant(
        "+ HF shading, robust (scale 0.01), presmoothed 0.75 px, + integrability 0.1",
        {"shading_weight": 1.0, "shading_robust_scale": 0.01, "shading_presmooth": 0.75,
         "integrability_weight": 0.1}),
    "shading-albedo-oracle-robust-integrable-presmooth": Variant(
        "+ HF shading, robust (scale 0.01), presmoothed 0.75 px, + integrability 0.1, photo over the true "
        "albedo (oracle)", {"shading_weight": 1.0, "shading_robust_scale": 0.01, "shading_presmooth": 0.75,
                            "integrability_weight": 0.1}, image=OVER_TRUE_ALBEDO),
}


def mean_errors(pred: torch.Tensor, truth: torch.Tensor, face: torch.Tensor, detail_mask: torch.Tensor) -> dict[str, float]:
    """Mean angular error (degrees, mean of image means) in each of REGIONS. Shapes as ``region_errors``."""
    return {region: float(summarize_errors(per_image)["mean"])
            for region, per_image in region_errors(pred, truth, face, detail_mask).items()}


def optimise_normals(objective: RefinementObjective, exemplar: torch.Tensor, rgb: torch.Tensor, gray: torch.Tensor,
                     mask: torch.Tensor, truth: torch.Tensor, detail_mask: torch.Tensor, steps: int = 300,
                     lr: float = 0.01, eval_every: int = 50, progress: bool = True, desc: str = "probe"
                     ) -> pd.DataFrame:
    """Adam on N = x / |x| (x starts at ``exemplar``) to lower ``objective``, its step size
    cosine-annealed from ``lr`` to 0 so that N settles at the optimum; errors on the way.

    exemplar, rgb, truth: B x 3 x H x W; gray, mask, detail_mask: B x 1 x H x W. Returns one row
    per measured step (0, eval_every, ..., steps): "step", "loss", and REGIONS in degrees.
    """
    if steps < 0 or eval_every < 1:
        raise ValueError(f"need steps >= 0 and eval_every >= 1, got steps={steps}, eval_every={eval_every}")
    rows = []
    bar = tqdm(total=steps + 1, desc=desc, disable=not progress)

    def measure(step: int, normals: torch.Tensor, loss: torch.Tensor) -> None:
        if step % eval_every == 0 or step == steps:
            rows.append({"step": step, "loss": float(loss), **mean_errors(normals, truth, mask, detail_mask)})
        bar.update()

    adam_on_normals(lambda normals: objective(normals, exemplar, rgb, gray, mask)["loss"], exemplar, steps, lr,
                    measure)
    bar.close()
    return pd.DataFrame(rows)


def probe_batch(dataset: Dataset, images: int) -> dict[str, torch.Tensor]:
    """The first ``images`` items of ``dataset`` stacked (keys gray, rgb, mask, detail_mask, normal,
    shading, gray_albedo)."""
    if not 0 < images <= len(dataset):
        raise ValueError(f"asked for {images} images; the split has {len(dataset)}")
    items = [dataset[i] for i in range(images)]
    return {key: torch.stack([item[key] for item in items])
            for key in ("gray", "rgb", "mask", "detail_mask", "normal", "shading", "gray_albedo")}


def variant_images(batch: dict[str, torch.Tensor], image: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (rgb B x 3 x H x W, gray B x 1 x H x W) that the image terms of a Variant with ``image``
    see, from a ``probe_batch``; an oracle's grey image stands in for its rgb too."""
    if image == PHOTO:
        return batch["rgb"], batch["gray"]
    gray = batch["shading"] if image == TRUE_SHADING else batch["gray"] / batch["gray_albedo"].clamp_min(ALBEDO_FLOOR)
    return gray.expand(-1, 3, -1, -1), gray


def probe_objectives(cfg: ExperimentConfig, coarse_net: nn.Module | None, dataset: Dataset,
                     variants: Sequence[Variant] = tuple(VARIANTS.values()), images: int = 8, steps: int = 300,
                     lr: float = 0.01, eval_every: int = 50, progress: bool = True,
                     start: str = "exemplar") -> pd.DataFrame:
    """Probe each variant (default: all of VARIANTS) on the first ``images`` faces of ``dataset``,
    from the exemplars of ``coarse_net`` (``checkpoint.load_coarse``), or with ``start`` =
    "detail-free" from the detail-free truth (an oracle; ``coarse_net`` unused); CPU.

    Returns rows ("variant", "step", "loss", *REGIONS, "vgg19": the perceptual term's weight
    source); step 0 is the exemplar itself, and one row ("detail-free truth", step 0) is the
    reference of the fine band (hffne_lib.evaluate).
    """
    if start not in STARTS:
        raise ValueError(f"start must be one of {sorted(STARTS)}, got {start!r}")
    if start == "exemplar" and coarse_net is None:
        raise ValueError("start 'exemplar' needs a coarse network")
    batch = probe_batch(dataset, images)
    mask, detail_mask, truth = batch["mask"], batch["detail_mask"], batch["normal"]
    reference = detail_free(truth, mask.bool())
    if start == "detail-free":
        exemplar = normalize(reference)
    else:
        torch.manual_seed(cfg.seed)  # the coarse U-Net keeps its dropout at test time
        with torch.no_grad():
            exemplar = coarse_net(batch["gray"]).float()
    parts = [pd.DataFrame([{"variant": DETAIL_FREE, "step": 0, "loss": float("nan"),
                            **mean_errors(reference, truth, mask, detail_mask)}])]
    for variant in variants:
        objective = refinement_objective(dataclasses.replace(cfg, **variant.overrides))
        rgb, gray = variant_images(batch, variant.image)
        torch.manual_seed(cfg.seed)
        curve = optimise_normals(objective, exemplar, rgb, gray, mask, truth, detail_mask, steps, lr, eval_every,
                                 progress, desc=f"probe: {variant.label}")
        parts.append(curve.assign(variant=variant.label, vgg19=objective.perceptual.vgg.weight_source))
    return pd.concat(parts, ignore_index=True)[["variant", "step", "loss", *REGIONS, "vgg19"]]


def final_table(curves: pd.DataFrame, start_label: str = EXEMPLAR) -> pd.DataFrame:
    """The start (a row named ``start_label``), each variant's last step, then the reference: rows
    by name, columns REGIONS."""
    variants = curves[curves["variant"] != DETAIL_FREE]
    rows = {start_label: variants[variants["step"] == 0].iloc[0]}
    for name, curve in variants.groupby("variant", sort=False):
        rows[name] = curve.sort_values("step").iloc[-1]
    rows[DETAIL_FREE] = curves[curves["variant"] == DETAIL_FREE].iloc[0]
    return pd.DataFrame(rows).T[list(REGIONS)].astype(float)


def main(argv: list[str] | None = None) -> None:
    """``python -m hffne_lib.probe``: write curves.csv and final.md to --out; SystemExit with one line on bad input."""
    parser = argparse.ArgumentParser(prog="python -m hffne_lib.probe",
                                     description="Probe what each refinement objective rewards (no network).")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--run-dir", help="a training run with a coarse stage (not needed with --start detail-free)")
    parser.add_argument("--start", choices=list(STARTS), default="exemplar",
                        help="where the normals start: the coarse exemplar (default), or the detail-free truth (oracle)")
    parser.add_argument("--split", default="wild_test")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="objectives to probe (default: all)")
    parser.add_argument("--out", required=True, help="folder for curves.csv and final.md")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier probe in --out")
    parser.add_argument("--no-progress", action="store_true")
    add_override_argument(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if not args.overwrite:
            check_absent(out / name for name in PROBE_FILES)
        cfg = get_config(args.preset, **parse_overrides(args.set))
        coarse_net, source = None, "the detail-free truth (oracle)"
        if args.start == "exemplar":
            if args.run_dir is None:
                raise ValueError("--run-dir is needed to start from the coarse exemplar (or pass --start detail-free)")
            checkpoint = exemplar_checkpoint(cfg, args.run_dir)
            if not checkpoint.is_file():
                raise ValueError(f"{checkpoint}: no such checkpoint; train the coarse stage first "
                                 f"(python -m hffne_lib.train coarse --run-dir {args.run_dir} ...)")
            coarse_net, payload = load_coarse(checkpoint, cfg.resolution, torch.device("cpu"))
            source = (f"exemplars from {checkpoint} (iteration {payload['iteration']}, "
                      f"trained at revision {payload.get('git_revision', 'unknown')})")
        curves = probe_objectives(cfg, coarse_net, open_split(cfg, args.split),
                                  [VARIANTS[name] for name in args.variants], images=args.images,
                                  steps=args.steps, lr=args.lr, eval_every=args.eval_every,
                                  progress=not args.no_progress, start=args.start)
    except (ValueError, KeyError, FileNotFoundError, OutputExistsError) as err:
        raise SystemExit(f"hffne_lib.probe: {err.args[0] if err.args else err}") from None
    out.mkdir(parents=True, exist_ok=True)
    curves_csv, final_md = (out / name for name in PROBE_FILES)
    curves.to_csv(curves_csv, index=False)
    table = final_table(curves, STARTS[args.start]).round(2).to_markdown()
    vgg = "; ".join(curves["vgg19"].dropna().unique())
    header = (f"Objective probe (beyond the paper): {args.split}, first {args.images} images, {args.steps} Adam "
              f"steps at lr {args.lr} on the normals themselves; preset {args.preset}; mean degrees; "
              f"VGG19: {vgg}; starting from {source}; probe revision {CODE_REVISION}.\n\n")
    final_md.write_text(header + table + "\n")
    print(header + table)


if __name__ == "__main__":
    main()
