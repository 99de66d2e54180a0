"""Experiment settings: one dataclass, five named presets, overrides by keyword.

    cfg = get_config("ci", coarse_iters=50, refiner__architecture="A1")

``get_config`` takes any field as a keyword; nested architecture fields use a double
underscore (``coarse__base_width``, ``refiner__code_dim``). Presets:

  ci     64 px data preset "ci", tiny widths; both stages in about 90 s on 2 CPU cores.
  smoke  the ci data and widths with 3x the coarse and 2.5x the refinement iterations: the default
         of ``make reproduce`` (every notebook, all Table 3 runs, under 15 min on 2 CPU cores).
  cpu    128 px data preset "cpu"; a meaningful demo: coarse 1,200 iterations (251 s measured on
         2 idle cores), refinement 1,500 (547 s with eval_every=500), 14 min for both stages; on a
         slower day of the same machine 445 s and 944 s, 23 min (at cc01771; 4c5a866 then as slow).
  gpu    256 px data preset "gpu", the paper's architectures; both stages in about 4.3 min on one
         H200 (bf16 autocast, channels_last, cudnn.benchmark; per-iteration times measured), so
         that one 10-minute command also holds the data build, the speed benchmark and the
         evaluation (scripts/gpu_check.sh). How the counts were chosen is in ``GPU_BUDGET_NOTE``.
  paper  the paper's schedule: coarse 200k iterations, refinement 150k, batch 8, lr 1e-4; run as
         the gpu preset (bf16 autocast, channels_last, 4 loader workers).

Fields marked BEYOND THE PAPER are options this project adds; their defaults switch them off,
so every preset trains the paper's method unless told otherwise.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import platform
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .augment import check_fraction, check_yaw
from .coarse import CoarseConfig
from .data.benchmark import BENCHMARK_PRESETS, SPLITS, benchmark_folder
from .refiner import RefinerConfig
from .losses import PERCEPTUAL_RELEASE_SCALE, check_shading_blurs
from .vgg import LAYER_INDEX, resolve_vgg19_weights

#: Splits the refinement stage may draw its (ground-truth-free) training images from.
REFINE_SPLITS = ("wild_train", "lab_train")
#: Held-out splits the refinement can be measured on while it trains (``eval_every``).
EVAL_SPLITS = ("lab_test", "wild_test", "scans")

GPU_BUDGET_NOTE = (
    "gpu preset sizing, measured on one H200 (torch 2.11, 2026-11-29, scripts/gpu_check.sh at e4b48ec, "
    "bf16 autocast, channels_last off; results/gpu_sessions/2026-11-29): coarse 31 ms/iteration (U-Net + "
    "PatchGAN, both updates, batch 8, 256 px) after 21 s of start-up; A3 refinement 42 ms/iteration after "
    "39 s. So 3,000 coarse and 2,500 refinement iterations take about 4.3 min together, which leaves room "
    "in one 10-minute device command "
    "for the data build, the speed benchmark (150 s) and the evaluation. The FLOP counts had promised "
    "more (torch.utils.flop_counter: 0.74 TFLOP per coarse and 3.6 per refinement iteration, so 15 and "
    "30 ms at 120 TFLOP/s): the refinement runs at 85 TFLOP/s, the coarse stage at 24 (not profiled; "
    "its many small kernels suggest launch-bound). Seen on that machine: the data build of the "
    "earlier, larger gpu data preset (6,453 samples, 6.8 GB) took 383 s on its 16 cores, against 258 s on "
    "the 2 cores of a CPU development machine (cause not established: the disk is a suspect, so "
    "scripts/gpu_check.sh is run there with DATA_ROOT under /dev/shm; the build's workers now run one "
    "torch thread each, and the data preset is 37% smaller); the evaluation, whose metrics then ran on "
    "the CPU, did not finish its three splits in 112 s (they now run on the estimator's device). The "
    "eight other refiners of Table 3 reuse the coarse run at about 2.4 min each (19 min)."
)


@dataclass
class ExperimentConfig:
    """Everything one training run (both stages) depends on. Units: iterations, pixels."""

    name: str = "paper"
    # data
    data_preset: str = "paper"          # a hffne_lib.data BENCHMARK_PRESETS name
    data_root: str = ""                 # where the benchmark is (built there when missing);
                                        # "": data/synthetic_<data_preset>, where the data command puts it
    # other data sets for some splits, "split=folder" each, e.g. real photos for the refinement
    # (hffne_lib.data.prepare_wild_photos: "wild_train=data/ffhq_wild"): ``root_of``
    split_roots: tuple[str, ...] = ()
    resolution: int = 256               # side of the square crops
    # architectures
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    # stage 1: pix2pix on lab_train with ground truth
    coarse_iters: int = 200_000
    coarse_batch: int = 8
    coarse_lr: float = 1e-4
    coarse_betas: tuple[float, float] = (0.5, 0.999)   # pix2pix's; the paper names only lr 1e-4
    supervised_loss: str = "l1"         # "l1" (pix2pix) or "cosine"
    supervised_weight: float = 100.0    # pix2pix's lambda_L1
    gan_weight: float = 1.0
    coarse_milestones: tuple[int, ...] = (1_000, 50_000, 100_000)   # Table 3's exemplar study
    # BEYOND THE PAPER (off by default): this fraction of lab images is re-rendered from its true
    # normals and albedo under a random light over a random background (hffne_lib.augment).
    coarse_relight: float = 0.0
    # BEYOND THE PAPER (off by default): > 0 turns each relit face out of the image plane first, by a
    # yaw drawn from [-this, this] degrees (hffne_lib.augment.turn_faces); needs coarse_relight > 0.
    coarse_relight_yaw: float = 0.0
    # BEYOND THE PAPER (off by default): this fraction of lab images (after relighting) is mirrored,
    # rolled, zoomed and shifted with its normals and mask (hffne_lib.augment.warp_lab_batch).
    coarse_warp: float = 0.0
    # stage 2: exemplar refinement, eq. 10, images without ground truth
    refine_iters: int = 150_000
    refine_batch: int = 8
    refine_lr: float = 1e-4
    refine_betas: tuple[float, float] = (0.9, 0.99)
    lambda_ref: float = 1.0             # smooth-L1 to the exemplar
    perceptual_weight: float = 1.0
    perceptual_scale: float = PERCEPTUAL_RELEASE_SCALE   # the release's 1 / (256 * 256)
    perceptual_layer: str = "relu1_2"
    paired: bool = True                 # False: each face gets another face's exemplar
    # the authors mixed Photoface with 300-W and FFHQ images; without lab images the refiner never
    # learns to reproduce good lab exemplars (cpu preset, 750 iterations: lab_test 19.6 deg
    # refined vs 13.7 with them mixed in, exemplar 6.5)
    refine_splits: tuple[str, ...] = ("wild_train", "lab_train")
    exemplar_iteration: int | None = None                 # coarse checkpoint: None = the final one
    # BEYOND THE PAPER (off by default): high-frequency shading term. A Lambertian light (with
    # ambient) is fitted per image to the exemplar by least squares; the refined normals' shading
    # under it must match the grey image's high frequencies (image minus a Gaussian blur of
    # ``shading_sigma`` px), which albedo, being smooth, mostly leaves out.
    shading_weight: float = 0.0
    shading_sigma: float = 2.0
    # > 0 (grey units): the shading residual is scored robustly (Geman-McClure at this scale), so
    # residuals far above it, where an albedo edge (brow, lip, eye) meets the skin, stop pulling.
    shading_robust_scale: float = 0.0
    # > 0 (px): the grey image and the refined normals' shading are both blurred by this Gaussian
    # first, so the term compares the band between it and shading_sigma: pixel noise, which passes
    # a plain high-pass whole, drops out (docs/beyond_the_paper.md, "Albedo and noise in the shading term").
    shading_presmooth: float = 0.0
    # BEYOND THE PAPER (off by default): > 0 makes the smooth-L1 to the exemplar compare only the
    # low frequencies (Gaussian sigma in px) inside the face mask: the exemplar's own fine band is
    # wrong (its fine-band error is above a detail-free prediction's), so copying it copies noise.
    reconstruction_sigma: float = 0.0
    # BEYOND THE PAPER (off by default): weight of the mean |curl| of the refined normals' slope
    # field (losses.integrability_loss). A surface's normals have none; the exemplar's have about
    # 4 times the truth's (cpu preset), and a shading term alone constrains only the component of
    # each normal along the light, which integrability ties to its neighbours. 0.1 was stable on the
    # cpu preset; 0.3 from the first iteration collapsed to near-constant grazing normals (docs/beyond_the_paper.md,
    # "Integrable normals"), unless warmed up or with a residual refiner (refiner__residual).
    integrability_weight: float = 0.0
    # the integrability weight ramps linearly from 0 over this fraction of refine_iters. A fresh
    # refiner's output is far from any surface; at full weight 0.3 from the first iteration the curl
    # term flattened it to constant grazing normals within 70 iterations, for good; ramped over the
    # first 20% it did not collapse.
    integrability_warmup: float = 0.0
    # BEYOND THE PAPER (off by default): > 0 keeps an exponential moving average of the refiner's
    # weights (and BatchNorm statistics) with this half-life in iterations, ramped up over the first
    # iterations (train.ema_decay); the evaluation during training, the checkpoint's inference weights
    # and so every later use of the checkpoint take the average. One run's errors swing by up to 0.4
    # degrees between milestones 1,000 iterations apart, from the weights, not the statistics; at 250 the
    # average smooths that and ends 3,000 cpu-preset iterations a little ahead, but lags early on
    # (docs/beyond_the_paper.md, "Where the milestone swings come from").
    refine_ema_halflife: float = 0.0
    # BEYOND THE PAPER (off by default): > 0 makes the smooth-L1 target (and the shading term's
    # lighting reference) each face's exemplar fitted to its image in this many Adam steps
    # (hffne_lib.fitting, FitSettings' other defaults), not the exemplar itself: the refiner learns
    # to predict test-time fitting's correction, so inference needs no fit (docs/beyond_the_paper.md,
    # "Distilling the fit into a refiner").
    fit_target_steps: int = 0
    # run
    seed: int = 0
    device: str = "cpu"
    amp: bool = False                   # bf16 autocast (CUDA only)
    channels_last: bool = False         # CUDA only
    compile: bool = False               # torch.compile the trained networks
    num_workers: int = 0
    cpu_threads: int = 0                # torch CPU threads; 0: torch's default. 1 is much faster
                                        # than 2 when other processes share the cores
    log_every: int = 10
    checkpoint_every: int = 500
    eval_every: int = 0                 # > 0: refinement runs log test-split errors to eval.csv
    eval_splits: tuple[str, ...] = EVAL_SPLITS
    vgg_path: str | None = None         # ImageNet VGG19 weights; None: HFFNE_VGG19_WEIGHTS / hub cache
    vgg_download: bool = False          # none found: download torchvision's (548 MB) into the hub cache

    def __post_init__(self) -> None:
        self.data_root = self.data_root or str(benchmark_folder(self.data_preset))
        for name, least in (("resolution", 1), ("coarse_batch", 1), ("refine_batch", 1), ("log_every", 1),
                            ("checkpoint_every", 1), ("coarse_iters", 0), ("refine_iters", 0), ("eval_every", 0),
                            ("num_workers", 0), ("cpu_threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            if value < least:
                raise ValueError(f"{name} must be {'at least 1' if least else '0 or more'}, got {value}")
        for name in ("coarse_lr", "refine_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)}")
        if isinstance(self.coarse, dict):
            self.coarse = CoarseConfig(**self.coarse)
        if isinstance(self.refiner, dict):
            self.refiner = RefinerConfig(**self.refiner)
        self.coarse_betas = tuple(self.coarse_betas)
        self.refine_betas = tuple(self.refine_betas)
        self.coarse_milestones = tuple(self.coarse_milestones)
        self.refine_splits = tuple(self.refine_splits)
        self.eval_splits = tuple(self.eval_splits)
        check_fraction(self.coarse_relight, "coarse_relight")
        check_fraction(self.coarse_warp, "coarse_warp")
        check_yaw(self.coarse_relight_yaw)
        if self.coarse_relight_yaw and not self.coarse_relight:
            raise ValueError("coarse_relight_yaw turns only relit images; set coarse_relight > 0 too")
        check_shading_blurs(self.shading_sigma, self.shading_presmooth)
        if not 0.0 <= self.integrability_warmup <= 1.0:
            raise ValueError(f"integrability_warmup is a fraction of refine_iters in [0, 1], got {self.integrability_warmup}")
        if self.refine_ema_halflife < 0:
            raise ValueError(f"refine_ema_halflife is a half-life in iterations >= 0 (0: off), got {self.refine_ema_halflife}")
        if self.fit_target_steps < 0:
            raise ValueError(f"fit_target_steps is a number of Adam steps >= 0 (0: off), got {self.fit_target_steps}")
        if self.data_preset not in BENCHMARK_PRESETS:
            raise ValueError(f"unknown data_preset {self.data_preset!r}; choose one of {list(BENCHMARK_PRESETS)}")
        if self.perceptual_layer not in LAYER_INDEX:
            raise ValueError(f"unknown perceptual_layer {self.perceptual_layer!r}; choose one of {list(LAYER_INDEX)}")
        if self.supervised_loss not in ("l1", "cosine"):
            raise ValueError(f"supervised_loss must be 'l1' or 'cosine', got {self.supervised_loss!r}")
        unknown = [s for s in self.refine_splits if s not in REFINE_SPLITS]
        if unknown or not self.refine_splits:
            raise ValueError(f"refine_splits must be drawn from {REFINE_SPLITS}, got {self.refine_splits}")
        self.split_roots = (self.split_roots,) if isinstance(self.split_roots, str) else tuple(self.split_roots)
        given = [entry.partition("=") for entry in self.split_roots]
        if any(not sep or split not in SPLITS or not root for split, sep, root in given) \
                or len({split for split, _, _ in given}) < len(given):
            raise ValueError(f"split_roots holds 'split=folder' entries, one per split of {SPLITS}, got {self.split_roots}")
        unknown = [s for s in self.eval_splits if s not in EVAL_SPLITS]
        if unknown:
            raise ValueError(f"eval_splits must be drawn from {EVAL_SPLITS}, got {self.eval_splits}")
        side = 2 ** self.coarse.depth
        if self.resolution % side:
            raise ValueError(f"resolution {self.resolution} is not divisible by 2**coarse.depth={side}")
        for name, sigma in (("shading_sigma", self.shading_sigma), ("reconstruction_sigma", self.reconstruction_sigma),
                            ("refiner__residual_highpass", self.refiner.residual_highpass)):
            if not 0.0 <= sigma or math.ceil(3 * sigma) >= self.resolution:
                raise ValueError(f"{name} is a Gaussian sigma in px: 0 or more and under a third of the "
                                 f"{self.resolution} px side, got {sigma}")
        if self.exemplar_iteration is not None and not (self.exemplar_iteration in self.coarse_milestones
                                                        and self.exemplar_iteration <= self.coarse_iters):
            raise ValueError(f"exemplar_iteration {self.exemplar_iteration} is not a coarse checkpoint this run keeps: "
                             f"use one of coarse_milestones {self.coarse_milestones} up to coarse_iters="
                             f"{self.coarse_iters}, or None (the final one)")

    def root_of(self, split: str) -> str:
        """The data set folder ``split`` is read from: its entry in ``split_roots``, else ``data_root``."""
        return dict(entry.split("=", 1) for entry in self.split_roots).get(split, self.data_root)

    def split_roots_note(self, splits: typing.Sequence[str]) -> dict[str, str]:
        """{"splits read elsewhere": "scans=DIR, ..."} for those of ``splits`` not read from
        ``data_root`` (provenance headers add it), else {}."""
        elsewhere = [f"{split}={self.root_of(split)}" for split in splits if self.root_of(split) != self.data_root]
        return {"splits read elsewhere": ", ".join(elsewhere)} if elsewhere else {}

    def with_split_roots(self, entries: typing.Sequence[str]) -> ExperimentConfig:
        """A copy reading the splits of ``entries`` ("split=folder" each) from those folders, the
        other splits as before; a one-line ValueError for a malformed entry."""
        given = {entry.partition("=")[0] for entry in entries}
        kept = [entry for entry in self.split_roots if entry.partition("=")[0] not in given]
        return dataclasses.replace(self, split_roots=(*kept, *entries))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples kept), safe for torch.load(weights_only=True)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentConfig":
        """The config ``to_dict`` wrote (a checkpoint's); TypeError for a field this code lacks."""
        return cls(**values)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> "ExperimentConfig":
        """The config a checkpoint carries, for reading its settings: fields this code no longer
        has are dropped, fields added since take their defaults. (Resuming is stricter.)"""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


#: Settings only the refinement stage reads: a finished coarse stage serves runs of any of them.
REFINEMENT_ONLY = frozenset({
    "refiner", "refine_iters", "refine_batch", "refine_lr", "refine_betas", "lambda_ref", "perceptual_weight",
    "perceptual_scale", "perceptual_layer", "paired", "refine_splits", "exemplar_iteration", "shading_weight",
    "shading_sigma", "shading_robust_scale", "shading_presmooth", "reconstruction_sigma", "integrability_weight",
    "integrability_warmup", "refine_ema_halflife", "fit_target_steps", "vgg_path",
    "vgg_download"})

#: The settings that make a coarse stage what it is (data, resolution, its network and training):
#: a refiner's config must agree with its coarse stage's on them, or the refiner's recorded settings,
#: and every table made from it, would describe another exemplar than it learnt from.
COARSE_DEFINING = frozenset({
    "data_preset", "resolution", "coarse", "coarse_batch", "coarse_lr", "coarse_betas", "supervised_loss",
    "supervised_weight", "gan_weight", "coarse_milestones", "coarse_relight", "coarse_relight_yaw", "coarse_warp"})

PRESETS: dict[str, ExperimentConfig] = {
    "ci": ExperimentConfig(
        name="ci", data_preset="ci", resolution=64,
        coarse=CoarseConfig(base_width=16, depth=6, disc_width=16, disc_layers=2),
        refiner=RefinerConfig(base_width=16, code_dim=128),
        coarse_iters=200, coarse_milestones=(1, 50, 100), refine_iters=60, refine_batch=4,
        log_every=5, checkpoint_every=50),
    "smoke": ExperimentConfig(
        name="smoke", data_preset="ci", resolution=64,
        coarse=CoarseConfig(base_width=16, depth=6, disc_width=16, disc_layers=2),
        refiner=RefinerConfig(base_width=16, code_dim=128),
        coarse_iters=600, coarse_milestones=(6, 150, 300), refine_iters=150, refine_batch=4,
        log_every=10, checkpoint_every=100),
    "cpu": ExperimentConfig(
        name="cpu", data_preset="cpu", resolution=128,
        coarse=CoarseConfig(base_width=32, depth=7, disc_width=32, disc_layers=3),
        refiner=RefinerConfig(base_width=16, code_dim=128),
        coarse_iters=1_200, coarse_milestones=(6, 300, 600), refine_iters=1_500, refine_batch=4,
        log_every=10, checkpoint_every=250),
    "gpu": ExperimentConfig(
        name="gpu", data_preset="gpu", resolution=256, device="cuda", amp=True, channels_last=True,
        coarse_iters=3_000, coarse_milestones=(15, 750, 1_500), refine_iters=2_500,
        num_workers=4, log_every=50, checkpoint_every=2_000),
    "paper": ExperimentConfig(name="paper", device="cuda", amp=True, channels_last=True, num_workers=4),
}


def checked_device(name: str | torch.device) -> torch.device:
    """``name`` (cpu, cuda, cuda:1, ...) as a torch.device, or a one-line ValueError when it names
    no device or asks for CUDA on a machine without it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {str(name)!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r} asked for but CUDA is not available here; use cpu")
    return device


def check_before_training(cfg: ExperimentConfig, refinement: bool = True) -> None:
    """What would otherwise fail minutes in, checked at once with one-line errors: the device
    (ValueError; before the data build) and, with ``refinement``, a VGG19 weights path that names
    no file (FileNotFoundError; before the coarse stage trains)."""
    checked_device(cfg.device)
    if refinement:
        resolve_vgg19_weights(cfg.vgg_path)


def device_name(device: str | torch.device) -> str:
    """The hardware behind a torch device: the GPU's name for CUDA (when present), else the CPU's."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def software_note() -> str:
    """The software behind a number besides our code, e.g. "Python 3.11.7, torch 2.13.0+cpu (CPU
    kernels AVX2), numpy 2.4.6": the same seed gives the same numbers where these and the device
    agree; another CPU (its kernels: AVX2, AVX512) or library version may round differently, and
    training amplifies a last-bit difference into a different model."""
    return (f"Python {platform.python_version()}, torch {torch.__version__} "
            f"(CPU kernels {torch.backends.cpu.get_cpu_capability()}), numpy {np.__version__}")


def get_config(name: str, **overrides: Any) -> ExperimentConfig:
    """A copy of preset ``name`` with ``overrides`` applied (``coarse__x`` / ``refiner__x`` nest)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    return with_overrides(PRESETS[name], **overrides)


def with_overrides(cfg: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """A copy of any config with ``overrides`` applied (``coarse__x`` / ``refiner__x`` nest). A
    data_root that was data_preset's default follows a new data_preset unless one is given too."""
    values = cfg.to_dict()
    if "data_root" not in overrides and cfg.data_root == str(benchmark_folder(cfg.data_preset)):
        values["data_root"] = ""
    declared = typing.get_type_hints(ExperimentConfig)
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        nested = bool(leaf) and dataclasses.is_dataclass(declared.get(section))
        target, kinds = (values[section], typing.get_type_hints(declared[section])) if nested else (values, declared)
        leaf = leaf if nested else key
        if leaf not in kinds:
            raise KeyError(f"unknown config field {key!r}")
        target[leaf] = checked_override(key, value, kinds[leaf])
    return ExperimentConfig.from_dict(values)


def checked_override(key: str, value: Any, kind: Any) -> Any:
    """``value`` for the field ``key`` declared as ``kind`` (a type, or a union with None). A list
    stands for a tuple, an int for a float; anything else of another type raises a one-line ValueError."""
    for option in typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,):
        base = typing.get_origin(option) or option
        if base is tuple and isinstance(value, (tuple, list)):
            return tuple(value)
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    raise ValueError(f"setting {key} takes {kind.__name__ if isinstance(kind, type) else kind}, got {value!r}")
