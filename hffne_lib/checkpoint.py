"""Training checkpoints: atomic writes, provenance, resume state, clear load errors.

A checkpoint is one ``torch.save``d plain dict (loadable with ``torch.load(weights_only=True)``):

    kind             "coarse" or "refiner"
    format           FORMAT_VERSION
    iteration        iterations completed
    resolution       training crop side (px)
    config           ExperimentConfig.to_dict()
    seed             the run's seed
    git_revision     ``git describe --always --dirty`` of the code as imported, or "unknown"
    manifest_hash    hffne_lib.data.manifest_hash of the training data, or "unknown"
    vgg_weight_source  where the VGG19 weights came from (random stand-in or a file)
    models           name -> state dict (coarse: generator, discriminator; refiner: refiner, and
                     WEIGHT_AVERAGE when the run kept a moving average of its weights)
    optimizers       name -> optimizer state dict
    rng              {"torch": CPU generator state, "cuda": [per-device states]}
    exemplar         (refiner only) path and iteration of the coarse checkpoint used

Layout of a run: ``<run_dir>/<kind>/latest.pt`` plus ``iter_<NNNNNNN>.pt`` for milestones.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from .coarse import CoarseConfig, UNetGenerator
from .config import ExperimentConfig
from .files import replaced_atomically
from .official import CheckpointError, read_checkpoint
from .refiner import Refiner, RefinerConfig

FORMAT_VERSION = 1
KINDS = ("coarse", "refiner")
LATEST = "latest.pt"
#: The models entry of a refiner trained with ``refine_ema_halflife`` > 0: the state dict of a
#: torch AveragedModel over the refiner (keys "module.<refiner key>" and "n_averaged").
WEIGHT_AVERAGE = "refiner_average"


#: What counts as the code for "-dirty": results/ and data/ change with every reproduction.
CODE_PATHS = ("hffne_lib", "notebooks", "scripts", "pyproject.toml")


def git_revision(repo: str | os.PathLike | None = None) -> str:
    """``git describe --always`` of the package's checkout, "-dirty" when CODE_PATHS hold changes
    (a reproduction rewrites tracked tables and figures, which is no change to the code); outside
    git (a copy of the tree without .git) the environment variable HFFNE_GIT_REVISION if set, else
    "unknown"."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        revision = git("describe", "--always") or "unknown"
        return revision + ("-dirty" if git("status", "--porcelain", "--", *CODE_PATHS) else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("HFFNE_GIT_REVISION", "unknown")


#: The revision of the code this process runs, taken when the package is imported: a long run keeps
#: executing that code even if the checkout is edited or moved on meanwhile.
CODE_REVISION = git_revision()


def rng_state() -> dict[str, Any]:
    """The torch CPU generator's state and (when CUDA is present) the current device's: under DDP
    every rank seeds and draws alike, so rank 0's states are every rank's (each on its own device)."""
    cuda = [torch.cuda.get_rng_state()] if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state``'s states, the CUDA one onto the current device. The states may have
    been loaded onto a GPU (map_location); the generators take them from the CPU only."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0].cpu())   # older checkpoints list every device: 0 is rank 0's


def milestone_path(stage_dir: str | os.PathLike, iteration: int) -> Path:
    """Where a coarse stage keeps its checkpoint of ``iteration`` (Table 3's exemplars): iter_NNNNNNN.pt."""
    return Path(stage_dir) / f"iter_{iteration:07d}.pt"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: to ``<path>.tmp``, then ``os.replace`` onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:
        torch.save(payload, tmp)
    return path


def make_payload(kind: str, iteration: int, config: ExperimentConfig, models: dict[str, torch.nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], manifest_hash: str, vgg_weight_source: str,
                 **extra: Any) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring); ``extra`` adds kind-specific entries."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    return {"kind": kind, "format": FORMAT_VERSION, "iteration": int(iteration),
            "resolution": config.resolution, "config": config.to_dict(), "seed": config.seed,
            "git_revision": CODE_REVISION, "manifest_hash": manifest_hash,
            "vgg_weight_source": vgg_weight_source,
            "models": {name: m.state_dict() for name, m in models.items()},
            "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
            "rng": rng_state(), **extra}


def load_checkpoint(path: str | os.PathLike, kind: str, resolution: int | None = None,
                    map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint of ``kind``; one-line CheckpointError when it is missing or does not fit.
    ``mmap``: tensors memory-mapped, not read (for its entries alone; ``map_location`` is then the CPU)."""
    path = Path(path)
    payload = read_checkpoint(path, map_location, mmap)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "kind" not in payload:
        raise CheckpointError(f"{path}: not a hffne training checkpoint (format {FORMAT_VERSION})")
    if payload["kind"] != kind:
        raise CheckpointError(f"{path}: is a {payload['kind']} checkpoint, expected a {kind} one")
    if resolution is not None and payload["resolution"] != resolution:
        raise CheckpointError(f"{path}: trained at {payload['resolution']} px, expected {resolution} px")
    return payload


def checkpoint_entry(path: str | os.PathLike, key: str, default: Any = None) -> Any:
    """One entry of a checkpoint, e.g. its config (memory-mapped: the weights are not read)."""
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return payload.get(key, default) if isinstance(payload, dict) else default


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """"coarse" or "refiner" for a training checkpoint; None for any other file (memory-mapped)."""
    try:
        return checkpoint_entry(path, "kind")
    except Exception:  # noqa: BLE001 - any unreadable file is "not a checkpoint"; load_checkpoint says why
        return None


def checkpoint_revision(path: str | os.PathLike) -> str:
    """The code revision that wrote a checkpoint (memory-mapped: the weights are not read)."""
    return checkpoint_entry(path, "git_revision", "unknown")


def architecture(payload: dict[str, Any], path: str | os.PathLike, section: str, kind: type) -> Any:
    """The network settings a checkpoint was trained with (its config's ``section``, e.g. "refiner"),
    as ``kind``; only they are needed to rebuild the network, so training options added or removed
    since do not matter. One-line CheckpointError for settings this code does not know."""
    try:
        return kind(**payload["config"][section])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its {section} settings do not fit this version of the code ({err}); "
                              f"use the revision that wrote it ({payload.get('git_revision', 'unknown')})") from None


def load_coarse(path: str | os.PathLike, resolution: int | None = None,
                map_location: str | torch.device = "cpu") -> tuple[UNetGenerator, dict[str, Any]]:
    """The coarse generator of a checkpoint (eval mode) and the checkpoint itself."""
    payload = load_checkpoint(path, "coarse", resolution, map_location)
    generator = architecture(payload, path, "coarse", CoarseConfig).build_generator()
    generator.load_state_dict(payload["models"]["generator"])
    return generator.to(map_location).eval(), payload


def load_refiner(path: str | os.PathLike, resolution: int | None = None,
                 map_location: str | torch.device = "cpu") -> tuple[Refiner, dict[str, Any]]:
    """The refiner of a checkpoint (eval mode, VGG source recorded; the moving average of its
    weights when the run kept one) and the checkpoint itself."""
    payload = load_checkpoint(path, "refiner", resolution, map_location)
    refiner = Refiner(architecture(payload, path, "refiner", RefinerConfig))
    state = payload["models"]["refiner"]
    if WEIGHT_AVERAGE in payload["models"]:
        state = {key.removeprefix("module."): value for key, value in payload["models"][WEIGHT_AVERAGE].items()
                 if key != "n_averaged"}
    refiner.load_state_dict(state)
    if refiner.vgg is not None:
        refiner.vgg.weight_source = payload["vgg_weight_source"]
    return refiner.to(map_location).eval(), payload
