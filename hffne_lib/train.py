"""Training loops for both stages, top to bottom.

    cfg = get_config("ci")                                    # benchmark in data/synthetic_ci
    coarse_ckpt = train_coarse(cfg, "results/runs/ci")        # pix2pix on lab_train (ground truth)
    refiner_ckpt = train_refiner(cfg, "results/runs/ci")      # eq. 10 on images, no ground truth

Command line (torchrun for several GPUs, or several CPU processes with the gloo backend):

    python -m hffne_lib.train both --preset cpu --run-dir results/runs/cpu    # data in data/synthetic_cpu
    torchrun --nproc_per_node 2 -m hffne_lib.train coarse --preset gpu --run-dir ...

Every run writes ``<run_dir>/<stage>/latest.pt`` (and milestone checkpoints for the coarse stage)
and a CSV loss log ``<run_dir>/<stage>/log.csv``; with ``eval_every`` > 0 a refinement run
also logs its test-split errors (hffne_lib.evaluate) to ``<run_dir>/<stage>/eval.csv``. A run
resumes from ``latest.pt`` when one exists and ends with the same numbers as an uninterrupted
run: the data order is a pure function of (seed, iteration), and the RNG and optimiser states
travel in the checkpoint.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import inspect
import itertools
import math
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .augment import relight_lab_batch, warp_lab_batch
from .checkpoint import (LATEST, WEIGHT_AVERAGE, checkpoint_entry, load_checkpoint, load_coarse, make_payload,
                         milestone_path, save_checkpoint, set_rng_state)
from .config import (COARSE_DEFINING, REFINEMENT_ONLY, ExperimentConfig, check_before_training, checked_device,
                     get_config)
from .evaluate import DETAIL_FREE, REGIONS, STAGES, evaluate_splits
from .files import replaced_atomically
from .fitting import FitSettings, fit_normals
from .losses import PerceptualLoss, RefinementObjective, gan_loss, supervised_normal_loss
from .official import CheckpointError
from .pipeline import NormalEstimator
from .refiner import Refiner
from .vgg import load_vgg19

#: Config fields a resumed run may change (they do not alter the numbers it computes; refine_iters
#: not with integrability_warmup, which ramps over a fraction of it: ``check_resumable``).
RESUMABLE_CHANGES = {"coarse_iters", "refine_iters", "device", "num_workers", "cpu_threads", "log_every",
                     "checkpoint_every", "data_root", "split_roots", "eval_every", "eval_splits"}


#: What the refinement reads of its training items (no ground truth).
REFINEMENT_INPUTS = ("gray", "rgb", "mask")

#: The weight average's half-life is at most this fraction of the iterations done (stylegan2-ada's
#: ema_rampup), so that the first, random weights do not linger in it.
EMA_RAMPUP = 0.25

#: Prefix of an A1 refiner's provenance "vgg_weights": no VGG19 inside, one in its training loss.
PERCEPTUAL_LOSS_VGG = "perceptual loss: "

#: Exit code of the training commands when ``--max-minutes`` ran out (run the command again to go on).
EXIT_TIME_BUDGET = 75


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stopped and its last good checkpoint is kept."""


class TimeBudgetReached(Exception):
    """The wall-clock budget ran out before the last iteration; the checkpoint of the iteration
    reached was written, so the same call resumes from it."""

    def __init__(self, stage_dir: Path, iteration: int, total: int):
        super().__init__(f"{stage_dir.name} stopped at iteration {iteration} of {total}: the time budget ran out; "
                         f"{stage_dir / LATEST} was saved, run the same command again to go on")
        self.stage_dir, self.iteration, self.total = stage_dir, iteration, total

    def __reduce__(self):  # pickled whole, so it crosses from a worker process (experiments' jobs)
        return type(self), (self.stage_dir, self.iteration, self.total)


# ----------------------------------------------------------------------------- runtime
@dataclass
class Runtime:
    """Where this process runs: its device and its place among the DDP processes."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def synchronize(self) -> None:
        """Wait for every DDP process (nothing to wait for in a single process)."""
        if self.world > 1:
            dist.barrier()

    def autocast(self, enabled: bool) -> AbstractContextManager:
        """bf16 autocast on CUDA when ``enabled``; a no-op elsewhere."""
        return bf16_autocast(self.device, enabled and self.device.type == "cuda")


def bf16_autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def setup_runtime(cfg: ExperimentConfig) -> Runtime:
    """Pick the device, join the DDP group when launched by torchrun, set speed/determinism flags."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = checked_device(cfg.device)
    if device.type == "cuda":
        if world > 1 or device.index is None:   # torchrun gives each process its GPU; alone: the one asked for
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = model.module if isinstance(model, DistributedDataParallel) else model
    return getattr(model, "_orig_mod", model)


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` with every 4-D parameter and buffer (the convolution weights) in channels_last
    layout, in place; other tensors stay as they are. ``Module.to(memory_format=channels_last)``
    raises on 5-D tensors, such as the refiner's modulated weights (1 x out x in x k x k)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


def make_adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], rt: Runtime) -> torch.optim.Adam:
    """Adam over ``params`` (already on ``rt.device``); on CUDA its fused implementation, one
    kernel per step for the same update (elsewhere torch's default, so CPU numbers stay put)."""
    return torch.optim.Adam(params, lr, betas, fused=True if rt.device.type == "cuda" else None)


#: DDP keeps each process's buffers (BatchNorm's running statistics) instead of copying rank 0's in
#: before every forward. Nothing changes: in training they do not enter the outputs, and rank 0's,
#: the ones saved, are the same either way. The copy broke the coarse stage on torch < 2.13: it
#: writes in place, between the discriminator's two forwards, tensors autograd has saved. Torch
#: 2.13 renamed the argument (``broadcast_buffers`` is deprecated there).
NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                          if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                          else {"broadcast_buffers": False})


def wrap(model: nn.Module, cfg: ExperimentConfig, rt: Runtime, unused_parameters: bool = False) -> nn.Module:
    """channels_last / DDP / torch.compile as the config and runtime ask.

    ``unused_parameters``: some trained parameters get no gradient (A2 never runs the code head).
    """
    model = model.to(rt.device)
    if cfg.channels_last and rt.device.type == "cuda":
        model = to_channels_last(model)
    if rt.world > 1 and any(p.requires_grad for p in model.parameters()):
        model = DistributedDataParallel(model, device_ids=[rt.device] if rt.device.type == "cuda" else None,
                                        find_unused_parameters=unused_parameters, **NO_FORWARD_BUFFER_SYNC)
    return torch.compile(model) if cfg.compile else model


# ----------------------------------------------------------------------------- data
class SeededBatchSampler(Sampler[list[int]]):
    """Index batches for iterations ``start+1 .. end``, a pure function of (seed, iteration).

    Epoch e is ``randperm(n)`` drawn from a generator seeded with ``seed + e``; each iteration
    takes the next ``global_batch`` indices (the tail of an epoch that cannot fill a batch is
    dropped), and DDP rank r keeps slice r of them. Resuming at iteration k therefore sees
    exactly the batches an uninterrupted run would.
    """

    def __init__(self, n: int, global_batch: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ValueError(f"batch {global_batch} does not split over {world} processes")
        if n < global_batch:
            raise ValueError(f"dataset of {n} items is smaller than one batch ({global_batch})")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world
        self.per_epoch = n // global_batch

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, order = -1, None
        local = self.global_batch // self.world
        for iteration in range(self.start, self.end):  # 0-based index of the batch
            if iteration // self.per_epoch != epoch:
                epoch = iteration // self.per_epoch
                order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            offset = (iteration % self.per_epoch) * self.global_batch + self.rank * local
            yield order[offset:offset + local].tolist()


def open_split(cfg: ExperimentConfig, split: str, build: bool = True) -> Dataset:
    """One split of the benchmark at ``cfg.data_root``, building the benchmark there if missing
    (``build``; else a one-line FileNotFoundError); or of the data set ``cfg.split_roots`` gives it
    (prepared beforehand, never built here)."""
    from .data import FaceNormalDataset, build_benchmark  # heavy; only training needs it
    root = cfg.root_of(split)
    if root != cfg.data_root:
        try:
            return FaceNormalDataset(root, split)
        except FileNotFoundError:
            raise FileNotFoundError(f"split_roots: no data set at {root} for {split}: prepare it first (python -m "
                                    "hffne_lib.data --photos for photos, --scans for scans)") from None
    try:
        return FaceNormalDataset(cfg.data_root, split)
    except FileNotFoundError:
        if not build:
            raise
        build_benchmark(cfg.data_root, cfg.data_preset)
        return FaceNormalDataset(cfg.data_root, split)


def build_benchmark_first(cfg: ExperimentConfig, progress: bool = True) -> None:
    """For the command lines: build a missing benchmark at ``cfg.data_root`` on every CPU core
    before training (``open_split``, inside the loops, builds on one core, which takes minutes at
    256 px). torchrun's processes would race to write it, so there it must exist already."""
    from .data import build_benchmark
    if data_manifest_hash(cfg) != "unknown":
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"no benchmark at {cfg.data_root}: build it before torchrun with "
                         f"python -m hffne_lib.data --preset {cfg.data_preset} --root {cfg.data_root}")
    build_benchmark(cfg.data_root, cfg.data_preset, progress=progress, workers=None)


def data_manifest_hash(cfg: ExperimentConfig, splits: Sequence[str] = ()) -> str:
    """Hash of the data ``splits`` are read from: the manifest hash of the benchmark at
    ``cfg.data_root`` ("unknown" when there is none) when they all are there, else the sha256 of
    that hash and those of the other folders ``cfg.split_roots`` gives them."""
    from .data import manifest_hash
    try:
        main = manifest_hash(cfg.data_root)
    except FileNotFoundError:
        return "unknown"
    others = sorted({cfg.root_of(split) for split in splits} - {cfg.data_root})
    if not others:
        return main
    return hashlib.sha256(";".join([main, *(manifest_hash(root) for root in others)]).encode()).hexdigest()


def make_loader(dataset: Dataset, cfg: ExperimentConfig, batch: int, start: int, end: int,
                rt: Runtime) -> DataLoader:
    """Batches for iterations start+1..end. The loader gets its own generator: drawing its worker
    seed from the global RNG would shift a resumed run's dropout masks."""
    sampler = SeededBatchSampler(len(dataset), batch, cfg.seed, start, end, rt.rank, rt.world)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                      pin_memory=rt.device.type == "cuda",
                      generator=torch.Generator().manual_seed(cfg.seed + start))


def to_device(batch: dict[str, Any], keys: tuple[str, ...], cfg: ExperimentConfig, rt: Runtime) -> list[torch.Tensor]:
    """Move ``keys`` of a batch to the device (channels_last for images on CUDA when asked)."""
    fmt = torch.channels_last if cfg.channels_last and rt.device.type == "cuda" else torch.contiguous_format
    return [batch[k].to(rt.device, torch.float32, non_blocking=True).contiguous(memory_format=fmt) for k in keys]


# ----------------------------------------------------------------------------- logging
class LossLog:
    """CSV loss log (iteration, seconds, then one column per loss), plus TensorBoard if installed.
    ``seconds``: wall time since this process started the stage (a resumed run counts from 0 again).

    Resuming at iteration k drops the rows a killed run wrote after k, so the log matches the
    uninterrupted run's; columns the earlier rows have and ``columns`` lacks (e.g. a split no
    longer evaluated) are kept after them. The file is replaced atomically.
    """

    def __init__(self, path: Path, columns: list[str], start: int, enabled: bool = True):
        self.path, self.columns, self.enabled = path, ["iteration", "seconds", *columns], enabled
        self.writer = None
        if not enabled:
            return
        kept: list[dict[str, str]] = []
        if start > 0 and path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                kept = [row for row in reader if int(row["iteration"]) <= start]
                self.columns += [column for column in reader.fieldnames or [] if column not in self.columns]
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(kept)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(path.parent / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.writer = None

    def write(self, iteration: int, seconds: float, losses: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({"iteration": iteration, "seconds": f"{seconds:.3f}", **losses})
        if self.writer is not None:
            for name, value in losses.items():
                self.writer.add_scalar(name, value, iteration)


def eval_column(split: str, region: str, stage: str) -> str:
    """The eval.csv column of one mean error (hffne_lib.evaluate's split, region and stage)."""
    return f"{split}/{region}/{stage}"


def measure_refinement(coarse_net: nn.Module, refiner: Refiner, datasets: dict[str, Dataset],
                       device: torch.device) -> dict[str, float]:
    """Mean errors ("split/region/stage" -> degrees, hffne_lib.evaluate) of the refiner being
    trained. The global RNG is left as it was (a resumed run must match an uninterrupted one)
    and the refiner goes back to train mode."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        summary = evaluate_splits(NormalEstimator(coarse_net, refiner), datasets, progress=False).summary
    refiner.train()
    return {eval_column(row.split, row.region, row.stage): row.mean for row in summary.itertuples()}


def read_log(path: str | os.PathLike) -> pd.DataFrame:
    """A run's loss log as a DataFrame indexed by iteration."""
    return pd.read_csv(path).set_index("iteration")


def time_is_up(deadline: float | None, iteration: int, cfg: ExperimentConfig, rt: Runtime) -> bool:
    """Whether ``deadline`` (``time.monotonic()`` seconds; None: never) has passed, looked at every
    ``cfg.log_every`` iterations. Under DDP rank 0's clock decides, so every process stops at the
    same iteration."""
    if deadline is None or iteration % cfg.log_every:
        return False
    if rt.world == 1:
        return time.monotonic() >= deadline
    up = torch.tensor(float(time.monotonic() >= deadline), device=rt.device)
    dist.broadcast(up, 0)
    return bool(up.item())


@dataclass(frozen=True)
class IterationPlan:
    """What a training loop does after one iteration: log it, save a checkpoint, stop for time."""

    log: bool
    save: bool
    out_of_time: bool


def plan_iteration(iteration: int, total: int, cfg: ExperimentConfig, rt: Runtime, deadline: float | None,
                   milestones: tuple[int, ...] = ()) -> IterationPlan:
    """Log every ``cfg.log_every`` iterations and at the last; save every ``cfg.checkpoint_every``,
    at ``milestones`` and the last; when ``deadline`` has passed before the last (``time_is_up``),
    save and stop."""
    out_of_time = time_is_up(deadline, iteration, cfg, rt) and iteration < total
    return IterationPlan(log=iteration % cfg.log_every == 0 or iteration == total,
                         save=(iteration % cfg.checkpoint_every == 0 or iteration in milestones
                               or iteration == total or out_of_time),
                         out_of_time=out_of_time)


def check_finite(losses: dict[str, torch.Tensor], iteration: int, stage_dir: Path, rt: Runtime,
                 models: Sequence[nn.Module] = ()) -> dict[str, float]:
    """Loss tensors -> floats; NonFiniteLossError naming the bad loss (or the weights of ``models``,
    checked where the loops save) and the checkpoint kept, raised on every DDP rank when any has one.

    Reading a loss waits for the GPU, so the loops call this only where they log or save. A NaN
    loss makes NaN gradients and weights, so the losses of every later iteration are NaN too; a
    finite loss with an infinite gradient is caught by the weights check before its save."""
    values = {name: float(value.detach()) for name, value in losses.items()}
    problem = next((f"loss {name} = {value}" for name, value in values.items() if not math.isfinite(value)), None)
    if problem is None and any(not torch.isfinite(p).all() for model in models for p in model.parameters()):
        problem = "non-finite weights"
    if rt.world > 1:   # every rank stops at once, none saves or waits for the others
        flag = torch.tensor([float(problem is not None)], device=rt.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        problem = problem or ("a non-finite loss or weight on another process" if flag.item() else None)
    if problem:
        latest = stage_dir / LATEST
        kept = f"last good checkpoint {latest} kept" if latest.is_file() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"{problem} at iteration {iteration}; training stopped, {kept}")
    return values


def restore(stage_dir: Path, kind: str, cfg: ExperimentConfig, rt: Runtime, models: dict[str, nn.Module],
            optimizers: dict[str, torch.optim.Optimizer], manifest: str, exemplar_iteration: int | None = None) -> int:
    """Load ``<stage_dir>/latest.pt`` into the models, optimizers and RNG; returns the iteration
    to go on from (0 when there is no checkpoint yet). One-line CheckpointError when the run would
    go on with other settings (``check_resumable``) or inputs (``check_same_inputs``)."""
    path = stage_dir / LATEST
    if not path.is_file():
        return 0
    saved = load_checkpoint(path, kind, cfg.resolution, rt.device)
    check_resumable(saved["config"], cfg, path, kind)
    check_same_inputs(saved, path, manifest, exemplar_iteration)
    for name, model in models.items():
        model.load_state_dict(saved["models"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][name])
    set_rng_state(saved["rng"])
    return saved["iteration"]


def check_resumable(saved: dict[str, Any], cfg: ExperimentConfig, path: Path, kind: str) -> None:
    """One-line CheckpointError when ``cfg`` differs from the saved config in a field that matters
    to a stage of ``kind`` (a coarse stage does not read config.REFINEMENT_ONLY). Fields added to
    the config after the checkpoint was written count at their defaults (off)."""
    ignored = RESUMABLE_CHANGES | (REFINEMENT_ONLY if kind == "coarse" else frozenset())
    try:
        then = ExperimentConfig.from_dict(saved).to_dict()
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot resume, its config does not fit this version of the code ({err}); "
                              "use another run_dir or resume=False") from None
    now = cfg.to_dict()
    for key, value in then.items():
        if key not in ignored and now[key] != value:
            raise CheckpointError(f"{path}: cannot resume, config field {key!r} was {value!r}, "
                                  f"now {now[key]!r} (use another run_dir or resume=False)")
    if kind == "refiner" and cfg.integrability_warmup and now["refine_iters"] != then["refine_iters"]:
        raise CheckpointError(f"{path}: cannot resume with refine_iters={now['refine_iters']} (was "
                              f"{then['refine_iters']}): integrability_warmup ramps over a fraction of refine_iters, "
                              "so the weights learnt so far would not be the new run's (use another run_dir)")


def check_same_inputs(saved: dict[str, Any], path: Path, manifest: str, exemplar_iteration: int | None) -> None:
    """One-line CheckpointError when a run would go on from other inputs than it started with:
    another benchmark (its manifest hash; "unknown..." on either side is not compared) or, for a
    refiner, the exemplars of another coarse iteration (the coarse stage trained on since)."""
    then = saved.get("manifest_hash", "unknown")
    if not then.startswith("unknown") and not manifest.startswith("unknown") and then != manifest:
        raise CheckpointError(f"{path}: cannot resume on another benchmark (trained on manifest {then[:12]}, the "
                              f"data root holds {manifest[:12]}); use the one it was trained on, another run_dir "
                              f"or resume=False")
    trained_on = saved.get("exemplar", {}).get("iteration")
    if exemplar_iteration is not None and trained_on is not None and trained_on != exemplar_iteration:
        raise CheckpointError(f"{path}: cannot resume: it learnt from the exemplars of coarse iteration {trained_on}, "
                              f"and that coarse checkpoint is at iteration {exemplar_iteration} now; use another "
                              f"stage name or resume=False")


def check_exemplar(saved: dict[str, Any], cfg: ExperimentConfig, path: Path) -> None:
    """One-line CheckpointError when the coarse checkpoint a refiner would learn from is not the one
    ``cfg`` describes: other coarse settings (config.COARSE_DEFINING; e.g. notebook 01 run with
    coarse_relight, notebook 02 without), or, the final exemplar asked for, a coarse stage not at
    coarse_iters (cut short, or trained longer)."""
    then = ExperimentConfig.from_saved(saved["config"]).to_dict()
    now = cfg.to_dict()
    for key in sorted(COARSE_DEFINING):
        if then[key] != now[key]:
            raise CheckpointError(f"{path}: the coarse stage was trained with {key}={then[key]!r}, this refinement's "
                                  f"config says {now[key]!r}; give it the coarse stage's settings, or another run_dir")
    if cfg.exemplar_iteration is None and saved["iteration"] != cfg.coarse_iters:
        raise CheckpointError(f"{path}: the coarse stage is at iteration {saved['iteration']}, not coarse_iters="
                              f"{cfg.coarse_iters}; finish it first (train coarse), or set coarse_iters="
                              f"{saved['iteration']}")


# ----------------------------------------------------------------------------- stage 1
def train_coarse(cfg: ExperimentConfig, run_dir: str | os.PathLike, *, resume: bool = True,
                 dataset: Dataset | None = None, progress: bool = True, stop_after: int | None = None,
                 deadline: float | None = None) -> Path:
    """Train the pix2pix coarse network on lab_train; returns the path of ``coarse/latest.pt``.

    Losses: supervised (cfg.supervised_loss inside the face mask) * cfg.supervised_weight +
    adversarial * cfg.gan_weight for the generator; the PatchGAN's BCE (halved) for the
    discriminator. ``cfg.coarse_relight`` > 0 relights that fraction of the images (beyond the
    paper; items then need "albedo" too), first turned out of plane by up to
    ``cfg.coarse_relight_yaw`` degrees, and ``cfg.coarse_warp`` > 0 warps that fraction with its
    normals and mask. ``dataset`` replaces lab_train (items with "gray", "normal", "mask");
    ``stop_after`` ends the run after that iteration as if it had been killed. At ``deadline``
    (``time.monotonic()`` seconds) the run saves its checkpoint and raises TimeBudgetReached.
    """
    rt = setup_runtime(cfg)
    stage_dir = Path(run_dir) / "coarse"
    torch.manual_seed(cfg.seed)
    generator = cfg.coarse.build_generator()
    discriminator = cfg.coarse.build_discriminator()
    generator.to(rt.device)
    discriminator.to(rt.device)
    opt_g = make_adam(generator.parameters(), cfg.coarse_lr, cfg.coarse_betas, rt)
    opt_d = make_adam(discriminator.parameters(), cfg.coarse_lr, cfg.coarse_betas, rt)

    data = dataset if dataset is not None else open_split(cfg, "lab_train")
    manifest = data_manifest_hash(cfg, ("lab_train",)) if dataset is None else "unknown (dataset passed in)"
    start = restore(stage_dir, "coarse", cfg, rt, {"generator": generator, "discriminator": discriminator},
                    {"generator": opt_g, "discriminator": opt_d}, manifest) if resume else 0
    net_g, net_d = wrap(generator, cfg, rt), wrap(discriminator, cfg, rt)

    loader = make_loader(data, cfg, cfg.coarse_batch, start, cfg.coarse_iters, rt)
    log = LossLog(stage_dir / "log.csv", ["loss_g", "g_supervised", "g_adversarial", "loss_d"], start, rt.is_main)

    def save(iteration: int) -> None:
        payload = make_payload("coarse", iteration, cfg, {"generator": unwrap(net_g), "discriminator": unwrap(net_d)},
                               {"generator": opt_g, "discriminator": opt_d}, manifest, "not used (coarse stage)")
        if iteration in cfg.coarse_milestones:   # first: a run killed between the two resumes before it
            save_checkpoint(milestone_path(stage_dir, iteration), payload)
        save_checkpoint(stage_dir / LATEST, payload)

    net_g.train(), net_d.train()
    t0 = time.perf_counter()
    bar = tqdm(loader, total=len(loader), initial=0, desc=f"coarse {start}->{cfg.coarse_iters}",
               disable=not (progress and rt.is_main))
    for iteration, batch in enumerate(bar, start=start + 1):
        gray, target, mask = to_device(batch, ("gray", "normal", "mask"), cfg, rt)
        if cfg.coarse_relight:
            albedo, = to_device(batch, ("albedo",), cfg, rt)
            gray, target, mask = relight_lab_batch(gray, target, albedo[:, :1], mask, cfg.coarse_relight,
                                                   cfg.coarse_relight_yaw)
        if cfg.coarse_warp:
            gray, target, mask = warp_lab_batch(gray, target, mask, cfg.coarse_warp)
        with rt.autocast(cfg.amp):
            fake = net_g(gray)
            # the whole image, background included, as pix2pix does: masking both sides gave worse
            # exemplars (docs/beyond_the_paper.md, "Showing the discriminator the face alone")
            loss_d = 0.5 * (gan_loss(net_d(gray, target), True) + gan_loss(net_d(gray, fake.detach()), False))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        with rt.autocast(cfg.amp):
            g_adversarial = gan_loss(net_d(gray, fake), True)
        g_supervised = supervised_normal_loss(fake.float(), target, mask, cfg.supervised_loss)
        loss_g = cfg.supervised_weight * g_supervised + cfg.gan_weight * g_adversarial
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        plan = plan_iteration(iteration, cfg.coarse_iters, cfg, rt, deadline, cfg.coarse_milestones)
        if plan.log or plan.save:   # reading the losses waits for the GPU: only here
            values = check_finite({"loss_g": loss_g, "g_supervised": g_supervised,
                                   "g_adversarial": g_adversarial, "loss_d": loss_d}, iteration, stage_dir, rt,
                                  (generator, discriminator) if plan.save else ())
        if plan.log:
            log.write(iteration, time.perf_counter() - t0, values)
            bar.set_postfix(sup=f"{values['g_supervised']:.4f}", d=f"{values['loss_d']:.3f}")
        if rt.is_main and plan.save:
            save(iteration)
        if plan.out_of_time:
            bar.close()
            raise TimeBudgetReached(stage_dir, iteration, cfg.coarse_iters)
        if stop_after is not None and iteration >= stop_after:
            break
    rt.synchronize()   # the other ranks go on (e.g. to the refinement) once rank 0's last save is done
    return stage_dir / LATEST


# ----------------------------------------------------------------------------- stage 2
def exemplar_checkpoint(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> Path:
    """The coarse checkpoint the refinement reads: milestone ``cfg.exemplar_iteration`` or the latest."""
    stage_dir = Path(run_dir) / "coarse"
    if cfg.exemplar_iteration is None:
        return stage_dir / LATEST
    return milestone_path(stage_dir, cfg.exemplar_iteration)


def finish_coarse(cfg: ExperimentConfig, run_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """The coarse checkpoint ``cfg``'s refinement reads (``exemplar_checkpoint``), after training
    its stage, or finishing one cut short, when it is not at coarse_iters yet (``kwargs`` go to
    ``train_coarse``). A finished stage is taken as it is, whatever its seed (a refiner's seed is
    its own; train_refiner checks the settings that make the stage, ``check_exemplar``)."""
    latest = Path(run_dir) / "coarse" / LATEST
    if not latest.is_file() or checkpoint_entry(latest, "iteration", 0) < cfg.coarse_iters:
        train_coarse(cfg, run_dir, **kwargs)
    return exemplar_checkpoint(cfg, run_dir)


def refinement_data(cfg: ExperimentConfig) -> Dataset:
    """The ground-truth-free training images: ``cfg.refine_splits`` (default wild_train and
    lab_train), concatenated, their REFINEMENT_INPUTS only (so real photos, which have no ground
    truth, batch with benchmark items)."""
    from .data import FieldsOf
    splits = [open_split(cfg, split) for split in cfg.refine_splits]
    return FieldsOf(splits[0] if len(splits) == 1 else ConcatDataset(splits), REFINEMENT_INPUTS)


def install_vgg(refiner: Refiner, cfg: ExperimentConfig) -> str:
    """Load the best VGG19 weights into the refiner's normal encoder; returns their source."""
    if refiner.vgg is None:
        return "not used (architecture A1)"
    source = load_vgg19("relu5_2", cfg.vgg_path, cfg.vgg_download, seed=cfg.seed)
    refiner.vgg.load_state_dict(source.state_dict())
    refiner.vgg.weight_source = source.weight_source
    return source.weight_source


def refinement_objective(cfg: ExperimentConfig) -> RefinementObjective:
    """The refinement loss of ``cfg`` (eq. 10 and its options), with its VGG19 loaded (``load_vgg19``)."""
    perceptual = PerceptualLoss(load_vgg19(cfg.perceptual_layer, cfg.vgg_path, cfg.vgg_download, seed=cfg.seed),
                                cfg.perceptual_scale, cfg.perceptual_layer)
    return RefinementObjective(perceptual, cfg.lambda_ref, cfg.perceptual_weight, cfg.shading_weight,
                               cfg.shading_sigma, cfg.reconstruction_sigma, cfg.shading_robust_scale,
                               cfg.integrability_weight, cfg.shading_presmooth)


def ema_decay(updates: int, halflife: float) -> float:
    """Decay of the weight average at its ``updates``-th update (>= 1): 0.5 ** (1 / h) with the
    half-life h = min(``halflife``, EMA_RAMPUP * updates) iterations."""
    return 0.5 ** (1.0 / min(halflife, EMA_RAMPUP * updates))


def weight_average(model: nn.Module, halflife: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (torch's AveragedModel: a copy
    of ``model``, updated by ``update_parameters(model)`` after each step), decaying as ``ema_decay``.
    The decay reads the update count from the average's own counter, which AveragedModel keeps on the
    CPU: the copy it hands to the update sits on the model's device, and reading that would wait for
    the GPU at every step."""
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        get_ema_multi_avg_fn(ema_decay(int(average.n_averaged), halflife))(averaged, current, updates)
    average = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    return average


def linear_ramp(iteration: int, length: float) -> float:
    """Warm-up factor of 1-based ``iteration``: iteration / length, capped at 1 (1 when length <= 0)."""
    return 1.0 if length <= 0 else min(1.0, iteration / length)


def train_refiner(cfg: ExperimentConfig, run_dir: str | os.PathLike, *, coarse_checkpoint: str | os.PathLike | None = None,
                  stage_name: str = "refiner", resume: bool = True, dataset: Dataset | None = None,
                  progress: bool = True, stop_after: int | None = None,
                  eval_datasets: dict[str, Dataset] | None = None, deadline: float | None = None) -> Path:
    """Train the exemplar-based refiner (eq. 10) without ground truth; returns ``<stage>/latest.pt``.

    Exemplars come from ``coarse_checkpoint`` (default: ``exemplar_checkpoint(cfg, run_dir)``),
    computed under no_grad in eval mode; unpaired runs give each face the exemplar of the previous
    face in the batch. Loss: lambda_ref * smooth-L1(N, R) + perceptual_weight * relu1_2 L1 (the
    release's scale) [+ shading_weight * high-frequency shading + integrability_weight * curl;
    reconstruction_sigma > 0 compares only low frequencies to the exemplar; fit_target_steps > 0
    replaces the exemplar by its fit to the image (hffne_lib.fitting): all beyond the paper].
    ``stage_name`` names the sub-folder, so variants can share one run_dir and one coarse stage.
    With ``cfg.eval_every`` > 0 the held-out ``eval_datasets`` (default: the benchmark's
    ``cfg.eval_splits``) are measured every that many iterations into ``<stage>/eval.csv``.
    ``cfg.refine_ema_halflife`` > 0 (beyond the paper) keeps a moving average of the weights
    (``weight_average``), which the evaluation measures and the checkpoint carries for inference.
    ``stop_after`` and ``deadline`` as for ``train_coarse``.
    """
    rt = setup_runtime(cfg)
    stage_dir = Path(run_dir) / stage_name
    coarse_path = Path(coarse_checkpoint) if coarse_checkpoint else exemplar_checkpoint(cfg, run_dir)
    coarse_net, coarse_payload = load_coarse(coarse_path, cfg.resolution, rt.device)
    if not coarse_checkpoint:      # the run's own coarse stage: the one its config describes
        check_exemplar(coarse_payload, cfg, coarse_path)
    if cfg.channels_last and rt.device.type == "cuda":
        coarse_net = to_channels_last(coarse_net)

    torch.manual_seed(cfg.seed)
    refiner = Refiner(cfg.refiner)
    vgg_source = install_vgg(refiner, cfg)
    objective = refinement_objective(cfg).to(rt.device)
    if refiner.vgg is None:
        vgg_source = f"{PERCEPTUAL_LOSS_VGG}{objective.perceptual.vgg.weight_source}"
    refiner.to(rt.device)
    optimizer = make_adam([p for p in refiner.parameters() if p.requires_grad], cfg.refine_lr, cfg.refine_betas, rt)

    models: dict[str, nn.Module] = {"refiner": refiner}
    if cfg.refine_ema_halflife:
        models[WEIGHT_AVERAGE] = average = weight_average(refiner, cfg.refine_ema_halflife)
    data = dataset if dataset is not None else refinement_data(cfg)
    manifest = data_manifest_hash(cfg, cfg.refine_splits) if dataset is None else "unknown (dataset passed in)"
    start = restore(stage_dir, "refiner", cfg, rt, models, {"refiner": optimizer}, manifest,
                    coarse_payload["iteration"]) if resume else 0
    measured_refiner = average.module if cfg.refine_ema_halflife else refiner
    net = wrap(refiner, cfg, rt, unused_parameters=cfg.refiner.architecture == "A2")

    loader = make_loader(data, cfg, cfg.refine_batch, start, cfg.refine_iters, rt)
    if not cfg.paired and cfg.refine_batch // rt.world < 2:
        raise ValueError("unpaired refinement needs at least 2 images per process batch to swap exemplars")
    log = LossLog(stage_dir / "log.csv", ["loss", *objective.terms], start, rt.is_main)
    measured = {}
    if cfg.eval_every and rt.is_main:
        measured = eval_datasets or {split: open_split(cfg, split) for split in cfg.eval_splits}
    eval_log = LossLog(stage_dir / "eval.csv", [eval_column(split, region, stage) for split in measured
                                                for region in REGIONS for stage in (*STAGES, DETAIL_FREE)],
                       start, bool(measured))
    exemplar_info = {"path": str(coarse_path), "iteration": coarse_payload["iteration"]}
    fit_target = FitSettings(steps=cfg.fit_target_steps) if cfg.fit_target_steps else None

    net.train()
    t0 = time.perf_counter()
    bar = tqdm(loader, total=len(loader), desc=f"{stage_name} {start}->{cfg.refine_iters}",
               disable=not (progress and rt.is_main))
    for iteration, batch in enumerate(bar, start=start + 1):
        gray, rgb, mask = to_device(batch, REFINEMENT_INPUTS, cfg, rt)
        with torch.no_grad(), rt.autocast(cfg.amp):
            exemplar = coarse_net(gray).float()
        target = exemplar if fit_target is None else fit_normals(fit_target, exemplar, gray, mask)
        if not cfg.paired:
            exemplar, target = exemplar.roll(1, dims=0), target.roll(1, dims=0)
        with rt.autocast(cfg.amp):
            refined = net(gray, exemplar).float()
            losses = objective(refined, target, rgb, gray, mask,
                               integrability_scale=linear_ramp(iteration, cfg.integrability_warmup * cfg.refine_iters))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if cfg.refine_ema_halflife:
            average.update_parameters(refiner)

        plan = plan_iteration(iteration, cfg.refine_iters, cfg, rt, deadline)
        if plan.log or plan.save:   # reading the losses waits for the GPU: only here
            values = check_finite(losses, iteration, stage_dir, rt, list(models.values()) if plan.save else ())
        if plan.log:
            log.write(iteration, time.perf_counter() - t0, values)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
        if measured and iteration % cfg.eval_every == 0:
            eval_log.write(iteration, time.perf_counter() - t0,
                           measure_refinement(coarse_net, measured_refiner, measured, rt.device))
        if rt.is_main and plan.save:
            save_checkpoint(stage_dir / LATEST, make_payload(
                "refiner", iteration, cfg, models, {"refiner": optimizer}, manifest,
                vgg_source, exemplar=exemplar_info))
        if plan.out_of_time:
            bar.close()
            raise TimeBudgetReached(stage_dir, iteration, cfg.refine_iters)
        if stop_after is not None and iteration >= stop_after:
            break
    rt.synchronize()   # the other ranks go on once rank 0's last save is done
    return stage_dir / LATEST


# ----------------------------------------------------------------------------- command line
def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """["key=value", ...] -> {key: python literal or string}."""
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"override {pair!r} is not key=value")
        try:
            overrides[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[key] = text
    return overrides


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE ...`` (repeatable, all apply; read with ``parse_overrides``)."""
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. refine_iters=500 refiner__architecture=A1")


def add_time_budget_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-minutes M`` (read with ``deadline_after``)."""
    parser.add_argument("--max-minutes", type=float, metavar="M",
                        help=f"wall-clock budget: when it runs out the run saves its checkpoint and exits with "
                             f"code {EXIT_TIME_BUDGET}; the same command then goes on from there")


def deadline_after(minutes: float | None) -> float | None:
    """``time.monotonic()`` seconds ``minutes`` from now (None: no deadline)."""
    return None if minutes is None else time.monotonic() + 60.0 * minutes


def parse_command_line(argv: list[str] | None = None) -> tuple[argparse.Namespace, ExperimentConfig]:
    """Command-line words -> (arguments, config). ``--set`` may be repeated; all of them apply.
    An unknown preset or setting exits with code 2 and one line."""
    parser = argparse.ArgumentParser(prog="python -m hffne_lib.train",
                                     description="Train HFFNE's coarse and/or refinement stage.")
    parser.add_argument("stage", choices=["coarse", "refiner", "both"])
    parser.add_argument("--preset", default="ci")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--stage-name", default="refiner", help="sub-folder of the refinement run")
    add_override_argument(parser)
    add_time_budget_argument(parser)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        return args, get_config(args.preset, **parse_overrides(args.set))
    except (KeyError, ValueError, TypeError) as err:
        parser.exit(2, f"{parser.prog}: {err.args[0] if err.args else err}\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m hffne_lib.train``; returns the exit code: 0 done, 1 a one-line error,
    EXIT_TIME_BUDGET when ``--max-minutes`` ran out (run it again to go on)."""
    args, cfg = parse_command_line(argv)
    kwargs = {"resume": not args.no_resume, "progress": not args.no_progress,
              "deadline": deadline_after(args.max_minutes)}
    try:
        check_before_training(cfg, refinement=args.stage in ("refiner", "both"))   # before building data
        build_benchmark_first(cfg, progress=not args.no_progress)
        if args.stage in ("coarse", "both"):
            print(train_coarse(cfg, args.run_dir, **kwargs))
        if args.stage in ("refiner", "both"):
            print(train_refiner(cfg, args.run_dir, stage_name=args.stage_name, **kwargs))
    except TimeBudgetReached as err:
        print(f"hffne_lib.train: {err}", file=sys.stderr)
        return EXIT_TIME_BUDGET
    except (CheckpointError, NonFiniteLossError, FileNotFoundError, ValueError) as err:
        print(f"hffne_lib.train: {err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
