"""The trained runs behind the paper's tables and figures, in one registry.

One run directory holds one coarse stage (``coarse/``, with Table 3's milestone checkpoints) and
one refinement sub-folder per experiment below. ``train_experiments`` trains whatever is missing
(every stage resumes, so a killed reproduction picks up where it stopped); ``load_experiment``
gives the NormalEstimator of one row.

    cfg = get_config("smoke")
    train_experiments(cfg, "results/runs/smoke")
    estimator = load_experiment(cfg, "results/runs/smoke", "A1")

From the shell, e.g. every run on two worker processes (on CPU, each with half the cores), into
the run directory the notebooks use (they then find them finished):

    python -m hffne_lib.experiments --preset cpu --jobs 2
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from .checkpoint import LATEST
from .config import ExperimentConfig, check_before_training, get_config, with_overrides
from .data.benchmark import DATA_FOLDER, MANIFEST, benchmark_folder
from .pipeline import NormalEstimator
from .official import CheckpointError
from .train import (EXIT_TIME_BUDGET, RESUMABLE_CHANGES, NonFiniteLossError, TimeBudgetReached, add_override_argument,
                    add_time_budget_argument, build_benchmark_first, deadline_after, exemplar_checkpoint,
                    parse_overrides, train_coarse, train_refiner)


#: Table 1's row of the best options beyond the paper measured on CPU (docs/beyond_the_paper.md,
#: "A refiner that starts at its exemplar" and "Albedo and noise in the shading term").
BEYOND_PAPER_ROW = "Ours-paired + residual + HF shading + integrability (beyond the paper)"


@dataclass(frozen=True)
class Experiment:
    """One refinement run: its sub-folder, its config overrides and a human label."""

    stage: str
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def experiments(cfg: ExperimentConfig) -> dict[str, Experiment]:
    """Row name -> Experiment. Milestone rows keep the paper's names (Iter1k, Iter50k); their
    labels give the iterations actually used by this preset. ValueError when the config keeps
    fewer than two coarse milestones (Table 3's exemplar study needs them)."""
    if len(cfg.coarse_milestones) < 2:
        raise ValueError(f"Table 3's exemplar study needs two coarse_milestones (Iter1k, Iter50k), "
                         f"got {cfg.coarse_milestones}")
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
        BEYOND_PAPER_ROW: Experiment(
            "refiner_residual_hf3_presmooth_integrable",
            {"refiner__residual": True, "shading_weight": 3.0, "shading_robust_scale": 0.01,
             "shading_presmooth": 0.75, "integrability_weight": 0.1},
            "BEYOND THE PAPER: A3 predicting a correction to its exemplar, with the robust high-frequency "
            "shading term (weight 3, presmoothed 0.75 px) and the curl penalty"),
    }


def experiment_config(cfg: ExperimentConfig, name: str) -> ExperimentConfig:
    """``cfg`` with experiment ``name``'s overrides applied."""
    known = experiments(cfg)
    if name not in known:
        raise KeyError(f"unknown experiment {name!r}; choose one of {list(known)}")
    return with_overrides(cfg, **known[name].overrides)


def refinement_stage(cfg: ExperimentConfig) -> str:
    """The sub-folder of a refinement run with settings ``cfg`` (notebook 02's default): the stage
    of the table row with these settings ("refiner" for the paper's model, "refiner_A1", ...), so
    its training serves the tables too; else "refiner_" + the settings that differ from preset
    ``cfg.name``'s, so runs of different settings never share (and never refuse to resume) a folder.
    Fields a run may change when resumed (train.RESUMABLE_CHANGES) do not count, but for refine_iters:
    a longer run in a row's folder would stand in the tables for that row's."""
    ignored = RESUMABLE_CHANGES - {"refine_iters"}

    def settings(config: ExperimentConfig) -> dict[str, Any]:
        flat = {}
        for key, value in config.to_dict().items():
            nested = value.items() if isinstance(value, dict) else [("", value)]
            flat.update({f"{key}__{sub}" if sub else key: item for sub, item in nested})
        return {key: value for key, value in flat.items() if key not in ignored}

    ours = settings(cfg)
    preset = get_config(cfg.name)
    for name, experiment in experiments(preset).items():
        if settings(experiment_config(preset, name)) == ours:
            return experiment.stage
    base = settings(preset)
    differing = [f"{key}-{'-'.join(map(str, value)) if isinstance(value, tuple) else value}"
                 for key, value in ours.items() if base.get(key) != value]
    return re.sub(r"[^A-Za-z0-9._-]", "_", "_".join(["refiner", *differing]))


def prepare(preset: str, data_root: str | os.PathLike = DATA_FOLDER, results_root: str | os.PathLike = "results",
            device: str | None = None, **overrides: Any) -> tuple[ExperimentConfig, Path]:
    """Notebook parameters -> (config, run directory). Every notebook calls this, so they agree:
    the benchmark lives in ``<data_root>/synthetic_<data preset>`` and the runs in
    ``<results_root>/runs/<preset>`` (a ``data_root`` that is a benchmark itself is taken as it is).
    The config keeps the benchmark's absolute path, so the runs' checkpoints name it from any
    working directory (notebooks run in notebooks/)."""
    cfg = get_config(preset, **({"device": device} if device else {}), **overrides)
    root = Path(data_root).resolve()
    cfg.data_root = str(root if (root / MANIFEST).is_file() else benchmark_folder(cfg.data_preset, root))
    return cfg, Path(results_root) / "runs" / preset


#: How many times a refinement run measures the test splits while it trains, unless told otherwise
#: (notebook 02's ``eval_every = None``).
EVALS_PER_RUN = 5


def refine_eval_every(cfg: ExperimentConfig, eval_every: int | None = None) -> int:
    """Iterations between two test-split evaluations of ``cfg``'s refinement run (for
    ``cfg.eval_every``): ``eval_every`` when given (0: never), else EVALS_PER_RUN per run
    (refine_iters // EVALS_PER_RUN, at least 1)."""
    return max(1, cfg.refine_iters // EVALS_PER_RUN) if eval_every is None else eval_every


def train_experiments(cfg: ExperimentConfig, run_dir: str | os.PathLike, names: Iterable[str] | None = None,
                      progress: bool = True, stage_progress: bool = False,
                      deadline: float | None = None, jobs: int = 1,
                      on_done: Callable[[str, Path, float], None] | None = None) -> dict[str, Path]:
    """Train the coarse stage and the named refinement runs (default: all), skipping finished ones.

    ``progress``: one bar over the runs; ``stage_progress``: a bar over each run's iterations too
    (off by default: notebook runners choke on the flood; never with ``jobs`` > 1). ``deadline``:
    as for ``train_coarse``. ``jobs`` > 1 trains that many refinement runs at once, each in a
    worker process (``train_runs_in_parallel``); every run is the same function of its config and
    coarse checkpoint either way. ``on_done(name, checkpoint, seconds)`` hears of each finished run."""
    run_dir = Path(run_dir)
    known = experiments(cfg)
    names = list(names or known)
    bar = tqdm(total=len(names) + 1, desc="runs", disable=not progress)
    bar.set_postfix_str("coarse")
    train_coarse(cfg, run_dir, progress=stage_progress, deadline=deadline)
    bar.update()
    if jobs > 1:
        return train_runs_in_parallel(cfg, run_dir, names, jobs, deadline, bar, on_done)
    done = {}
    for name in names:
        bar.set_postfix_str(name)
        done[name], seconds = train_run(cfg, run_dir, name, deadline, stage_progress)
        bar.update()
        if on_done is not None:
            on_done(name, done[name], seconds)
    bar.close()
    return done


def train_run(cfg: ExperimentConfig, run_dir: Path, name: str, deadline: float | None = None,
              progress: bool = False) -> tuple[Path, float]:
    """Train (or finish) the refinement run of row ``name`` on the coarse stage in ``run_dir``;
    returns its checkpoint and the seconds it took."""
    start = time.perf_counter()
    checkpoint = train_refiner(experiment_config(cfg, name), run_dir, stage_name=experiments(cfg)[name].stage,
                               progress=progress, deadline=deadline)
    return checkpoint, time.perf_counter() - start


def train_runs_in_parallel(cfg: ExperimentConfig, run_dir: Path, names: list[str], jobs: int,
                           deadline: float | None, bar: tqdm,
                           on_done: Callable[[str, Path, float], None] | None = None) -> dict[str, Path]:
    """The refinement runs ``names`` on ``jobs`` worker processes (spawned; each takes runs one
    after another and shares its start-up, CUDA's included, between them). On CPU, with
    ``cfg.cpu_threads`` 0, each worker gets an equal share of the cores. Every run goes on when
    another fails; the first failure (a time budget last) is raised once all have stopped."""
    from .data.benchmark import available_cores  # the data package is heavy; only training needs it

    threads = cfg.cpu_threads or max(1, available_cores() // jobs)
    done, failures = {}, []
    with ProcessPoolExecutor(min(jobs, len(names)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(train_run, cfg, run_dir, name, deadline): name for name in names}
        for future in as_completed(futures):
            name = futures[future]
            try:
                done[name], seconds = future.result()
            except Exception as err:  # noqa: BLE001 - kept, raised when every run has stopped
                failures.append(err)
                bar.write(f"{name}: {err}")
                continue
            bar.update()
            if on_done is not None:
                on_done(name, done[name], seconds)
    bar.close()
    if failures:
        raise min(failures, key=lambda err: isinstance(err, TimeBudgetReached))
    return {name: done[name] for name in names}


def experiment_checkpoints(cfg: ExperimentConfig, run_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """The checkpoints of one row: (the coarse one its refiner was trained on, the refiner's latest)."""
    run_dir = Path(run_dir)
    coarse = exemplar_checkpoint(experiment_config(cfg, name), run_dir)
    return coarse, run_dir / experiments(cfg)[name].stage / LATEST


def load_experiment(cfg: ExperimentConfig, run_dir: str | os.PathLike, name: str,
                    device: str = "cpu") -> NormalEstimator:
    """The estimator of one row: the coarse checkpoint its refiner was trained on + that refiner."""
    estimator = NormalEstimator.from_checkpoints(*experiment_checkpoints(cfg, run_dir, name), device)
    estimator.provenance["experiment"] = name
    return estimator


def main(argv: list[str] | None = None) -> int:
    """``python -m hffne_lib.experiments``; returns the exit code: 0 done, 1 a one-line error,
    2 a usage error, EXIT_TIME_BUDGET when ``--max-minutes`` ran out (run it again to go on)."""
    parser = argparse.ArgumentParser(
        prog="python -m hffne_lib.experiments",
        description="Train the runs behind Tables 1-3 (default all) into the notebooks' run directory, "
                    "--jobs of them at once; --list names them. Finished runs are skipped, killed ones resume.")
    parser.add_argument("--preset", default="smoke", help="experiment preset (ci, smoke, cpu, gpu, paper)")
    parser.add_argument("--runs", nargs="*", metavar="NAME", help="row names (default: all); see --list")
    parser.add_argument("--data-root", default=DATA_FOLDER, help="benchmarks live in <data-root>/synthetic_<data preset>")
    parser.add_argument("--results-root", default="results", help="runs go to <results-root>/runs/<preset>")
    parser.add_argument("--device", default=None, help="torch device (default: the preset's)")
    parser.add_argument("--list", action="store_true", help="print the run names and their labels, then stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--jobs", type=int, default=1,
                        help="refinement runs trained at once, one worker process each (default 1)")
    add_override_argument(parser)
    add_time_budget_argument(parser)
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        for name in ("data_root", "device"):
            if name in overrides:
                raise ValueError(f"set {name} with --{name.replace('_', '-')}, not --set")
        cfg, run_dir = prepare(args.preset, args.data_root, args.results_root, args.device, **overrides)
        known = experiments(cfg)
        for name in args.runs or known:
            if name in known:
                experiment_config(cfg, name)        # every row's settings checked before any training
    except (KeyError, ValueError, TypeError) as err:
        parser.exit(2, f"hffne_lib.experiments: {err.args[0] if err.args else err}\n")
    if args.list:
        name_width = max(map(len, known))
        stage_width = max(len(experiment.stage) for experiment in known.values())
        for name, experiment in known.items():
            print(f"{name:{name_width}s}  {experiment.stage:{stage_width}s}  {experiment.label}")
        return 0
    unknown = [name for name in args.runs or [] if name not in known]
    if unknown:
        parser.exit(2, f"hffne_lib.experiments: unknown run {unknown[0]!r}; --list names them\n")
    if args.jobs < 1:
        parser.exit(2, f"hffne_lib.experiments: --jobs must be at least 1, got {args.jobs}\n")
    deadline = deadline_after(args.max_minutes)
    try:
        check_before_training(cfg)                  # device and VGG19 weights: before building data
        build_benchmark_first(cfg, progress=not args.no_progress)
        train_experiments(cfg, run_dir, args.runs or list(known), progress=not args.no_progress,
                          stage_progress=not args.no_progress and args.jobs == 1, deadline=deadline, jobs=args.jobs,
                          on_done=lambda name, path, seconds: print(f"{name}: {path} ({seconds:.0f} s)", flush=True))
    except TimeBudgetReached as err:
        print(f"hffne_lib.experiments: {err}", file=sys.stderr)
        return EXIT_TIME_BUDGET
    except (CheckpointError, NonFiniteLossError, FileNotFoundError, ValueError) as err:
        print(f"hffne_lib.experiments: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
