"""The trained runs behind the paper's tables and figures, in one registry.

One run directory holds one coarse stage (``coarse/``, with Table 3's milestone checkpoints) and
one refinement sub-folder per experiment below. ``train_experiments`` trains whatever is missing
(every stage resumes, so a killed reproduction picks up where it stopped); ``load_experiment``
gives the NormalEstimator of one row.

    cfg = get_config("smoke")
    train_experiments(cfg, "results/runs/smoke")
    estimator = load_experiment(cfg, "results/runs/smoke", "A1")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tqdm.auto import tqdm

from .checkpoint import LATEST, milestone_path
from .config import ExperimentConfig, get_config, with_overrides
from .pipeline import NormalEstimator
from .train import train_coarse, train_refiner


@dataclass(frozen=True)
class Experiment:
    """One refinement run: its sub-folder, its config overrides and a human label."""

    stage: str
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def experiments(cfg: ExperimentConfig) -> dict[str, Experiment]:
    """Row name -> Experiment. Milestone rows keep the paper's names (Iter1k, Iter50k); their
    labels give the iterations actually used by this preset."""
    early, middle = cfg.coarse_milestones[0], cfg.coarse_milestones[1]
    return {
        "Ours-paired": Experiment("refiner", {}, "A3, paired exemplars (the paper's model)"),
        "Ours-unpaired": Experiment("refiner_unpaired", {"paired": False}, "A3, exemplars of other faces"),
        "Iter1k": Experiment("refiner_iter_early", {"exemplar_iteration": early},
                             f"A3, exemplar from the coarse checkpoint at {early} iterations"),
        "Iter50k": Experiment("refiner_iter_middle", {"exemplar_iteration": middle},
                              f"A3, exemplar from the coarse checkpoint at {middle} iterations"),
        "A1": Experiment("refiner_A1", {"refiner__architecture": "A1"}, "exemplar concatenated with the input"),
        "A2": Experiment("refiner_A2", {"refiner__architecture": "A2"}, "features concatenated"),
        "w/o modulation": Experiment("refiner_concat", {"refiner__architecture": "concat"},
                                     "code concatenated in every up block"),
        "AdaIN": Experiment("refiner_adain", {"refiner__architecture": "adain"}, "AdaIN instead of modulation"),
        "Ours-paired + HF shading": Experiment(
            "refiner_hf_shading", {"shading_weight": 1.0},
            "BEYOND THE PAPER: A3 plus the high-frequency shading term"),
    }


def experiment_config(cfg: ExperimentConfig, name: str) -> ExperimentConfig:
    """``cfg`` with experiment ``name``'s overrides applied."""
    known = experiments(cfg)
    if name not in known:
        raise KeyError(f"unknown experiment {name!r}; choose one of {list(known)}")
    return with_overrides(cfg, **known[name].overrides)


def prepare(preset: str, data_root: str | os.PathLike = "data", results_root: str | os.PathLike = "results",
            device: str | None = None, **overrides: Any) -> tuple[ExperimentConfig, Path]:
    """Notebook parameters -> (config, run directory). Every notebook calls this, so they agree:
    the benchmark lives in ``<data_root>/synthetic_<data preset>`` and the runs in
    ``<results_root>/runs/<preset>``."""
    cfg = get_config(preset, **({"device": device} if device else {}), **overrides)
    cfg.data_root = str(Path(data_root) / f"synthetic_{cfg.data_preset}")
    return cfg, Path(results_root) / "runs" / preset


def train_experiments(cfg: ExperimentConfig, run_dir: str | os.PathLike, names: Iterable[str] | None = None,
                      progress: bool = True) -> dict[str, Path]:
    """Train the coarse stage and the named refinement runs (default: all), skipping finished ones.

    One progress bar over the runs (not one per run: notebook runners choke on the flood)."""
    run_dir = Path(run_dir)
    known = experiments(cfg)
    names = list(names or known)
    bar = tqdm(total=len(names) + 1, desc="runs", disable=not progress)
    bar.set_postfix_str("coarse")
    train_coarse(cfg, run_dir, progress=False)
    bar.update()
    done = {}
    for name in names:
        bar.set_postfix_str(name)
        experiment = known[name]
        done[name] = train_refiner(experiment_config(cfg, name), run_dir, stage_name=experiment.stage,
                                   progress=False)
        bar.update()
    bar.close()
    return done


def load_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike, name: str,
                    device: str = "cpu") -> NormalEstimator:
    """The estimator of one row: the coarse checkpoint its refiner was trained on + that refiner."""
    run_dir = Path(run_dir)
    exp_cfg = experiment_config(cfg, name)
    coarse_dir = run_dir / "coarse"
    coarse = coarse_dir / LATEST if exp_cfg.exemplar_iteration is None else milestone_path(coarse_dir, exp_cfg.exemplar_iteration)
    estimator = NormalEstimator.from_checkpoints(coarse, run_dir / experiments(cfg)[name].stage / LATEST, device)
    estimator.provenance["experiment"] = name
    return estimator


