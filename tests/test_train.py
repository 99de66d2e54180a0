"""Training loops: learning, determinism, exact resume, NaN stop, DDP (2 gloo processes)."""
from __future__ import annotations

import math
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.optim.optimizer import register_optimizer_step_post_hook

from hffne_lib.checkpoint import WEIGHT_AVERAGE, load_checkpoint, load_coarse, load_refiner, save_checkpoint
from hffne_lib.config import get_config, with_overrides
from hffne_lib.experiments import BEYOND_PAPER_ROW, experiments
from hffne_lib.fitting import FitSettings, fit_normals
from hffne_lib.losses import high_frequency_shading_loss
from hffne_lib.train import (EXIT_TIME_BUDGET, NonFiniteLossError, Runtime, SeededBatchSampler, TimeBudgetReached,
                             bf16_autocast, check_finite, ema_decay, linear_ramp, main, make_adam, parse_command_line,
                             read_log, setup_runtime, to_channels_last, train_coarse, train_refiner, weight_average)

warnings.filterwarnings("ignore", message="VGG19: no ImageNet weights")


class RandomFaces(torch.utils.data.Dataset):
    """Benchmark-shaped items (gray, rgb, normal, mask, detail_mask) with a learnable mapping:
    the normal tilts with the grey level, so a network can fit it. ``nan_after``: items fetched
    after that many calls return NaN images."""

    def __init__(self, n: int = 16, res: int = 64, seed: int = 0, nan_after: int | None = None):
        g = torch.Generator().manual_seed(seed)
        self.gray = torch.nn.functional.avg_pool2d(torch.rand(n, 1, res, res, generator=g), 5, 1, 2)
        tilt = (self.gray - 0.5) * 3
        self.normal = torch.nn.functional.normalize(torch.cat([tilt, -tilt, torch.ones_like(tilt)], 1), dim=1)
        self.mask = torch.zeros(n, 1, res, res)
        self.mask[..., res // 8: -res // 8, res // 8: -res // 8] = 1
        self.detail = torch.zeros_like(self.mask)
        self.detail[..., res // 4: res // 2, res // 4: -res // 4] = 1
        self.nan_after, self.calls = nan_after, 0

    def __len__(self) -> int:
        return len(self.gray)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.calls += 1
        gray = self.gray[i]
        if self.nan_after is not None and self.calls > self.nan_after:
            gray = torch.full_like(gray, float("nan"))
        return {"gray": gray, "rgb": gray.repeat(3, 1, 1), "normal": self.normal[i], "mask": self.mask[i],
                "detail_mask": self.detail[i]}


def tiny(**overrides):
    """The ci preset, shorter, for fast tests."""
    values = dict(coarse_iters=12, refine_iters=6, coarse_batch=4, refine_batch=4, log_every=1,
                  checkpoint_every=5, coarse_milestones=(2, 10))
    values.update(overrides)
    return get_config("ci", **values)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sampler_order_depends_only_on_seed_and_iteration():
    full = list(SeededBatchSampler(10, 4, seed=3, start=0, end=7))
    assert list(SeededBatchSampler(10, 4, seed=3, start=4, end=7)) == full[4:]
    assert all(len(set(b)) == 4 for b in full)
    assert sorted(full[0] + full[1]) != sorted(full[2] + full[3]) or full[:2] != full[2:4]  # epochs reshuffle
    ranks = [list(SeededBatchSampler(10, 4, 3, 0, 7, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == full
    with pytest.raises(ValueError, match="does not split"):
        SeededBatchSampler(10, 3, 0, 0, 1, world=2)


def test_ci_training_learns(tmp_path):
    cfg = tiny(coarse_iters=60, refine_iters=30, log_every=5, checkpoint_every=100)
    train_coarse(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    train_refiner(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    coarse = read_log(tmp_path / "coarse" / "log.csv")["g_supervised"]
    refine = read_log(tmp_path / "refiner" / "log.csv")["reconstruction"]
    assert coarse.iloc[-3:].mean() < 0.7 * coarse.iloc[:3].mean()
    assert refine.iloc[-3:].mean() < 0.7 * refine.iloc[:3].mean()
    assert sorted(p.name for p in (tmp_path / "coarse").glob("iter_*.pt")) == ["iter_0000002.pt", "iter_0000010.pt"]


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        path = train_coarse(tiny(seed=seed, coarse_iters=4), tmp_path / name, dataset=RandomFaces(), progress=False)
        runs[name] = (load_checkpoint(path, "coarse")["models"]["generator"],
                      read_log(tmp_path / name / "coarse" / "log.csv").drop(columns="seconds"))
    assert states_equal(runs["a"][0], runs["b"][0]) and runs["a"][1].equals(runs["b"][1])
    assert not states_equal(runs["a"][0], runs["c"][0])


@pytest.mark.parametrize("stage", ["coarse", "refiner"])
def test_resume_equals_uninterrupted(tmp_path, stage):
    cfg = tiny(paired=False)  # unpaired also exercises the exemplar swap
    train_coarse(cfg, tmp_path / "full", dataset=RandomFaces(), progress=False)
    train_coarse(cfg, tmp_path / "killed", dataset=RandomFaces(), progress=False,
                 stop_after=8 if stage == "coarse" else None)
    if stage == "refiner":
        train_refiner(cfg, tmp_path / "full", dataset=RandomFaces(), progress=False)
        train_refiner(cfg, tmp_path / "killed", dataset=RandomFaces(), progress=False, stop_after=4)
    killed_log = read_log(tmp_path / "killed" / stage / "log.csv")
    assert killed_log.index.max() in (8, 4)  # ran past its last checkpoint (5), then "died"
    resume = train_coarse if stage == "coarse" else train_refiner
    resume(cfg, tmp_path / "killed", dataset=RandomFaces(), progress=False)

    full = load_checkpoint(tmp_path / "full" / stage / "latest.pt", stage)
    resumed = load_checkpoint(tmp_path / "killed" / stage / "latest.pt", stage)
    assert full["iteration"] == resumed["iteration"]
    for name in full["models"]:
        assert states_equal(full["models"][name], resumed["models"][name]), name
    logs = [read_log(tmp_path / run / stage / "log.csv").drop(columns="seconds") for run in ("full", "killed")]
    assert logs[0].equals(logs[1])


def test_a_run_killed_between_its_two_checkpoint_writes_still_gets_its_milestone(tmp_path, monkeypatch):
    """Iteration 10 is a milestone and a checkpoint: killed after the first of its two files, the
    resumed run ends with the milestone, equal to the uninterrupted run's."""
    cfg = tiny()
    train_coarse(cfg, tmp_path / "full", dataset=RandomFaces(), progress=False)
    writes = []

    def killed_at_the_second_write_of_iteration_10(path, payload):
        writes.append(payload["iteration"])
        if writes.count(10) == 2:
            raise KeyboardInterrupt
        save_checkpoint(path, payload)

    monkeypatch.setattr("hffne_lib.train.save_checkpoint", killed_at_the_second_write_of_iteration_10)
    with pytest.raises(KeyboardInterrupt):
        train_coarse(cfg, tmp_path / "killed", dataset=RandomFaces(), progress=False)
    monkeypatch.undo()
    train_coarse(cfg, tmp_path / "killed", dataset=RandomFaces(), progress=False)
    milestones = [load_checkpoint(tmp_path / run / "coarse" / "iter_0000010.pt", "coarse")["models"]["generator"]
                  for run in ("full", "killed")]
    assert states_equal(*milestones)


@pytest.mark.parametrize("stage", ["coarse", "refiner"])
def test_time_budget_saves_and_resumes_to_the_uninterrupted_numbers(tmp_path, stage):
    cfg = tiny(log_every=3)      # the clock is read every 3 iterations: a spent budget stops at 3
    train_coarse(cfg, tmp_path / "full", dataset=RandomFaces(), progress=False)
    train = train_coarse if stage == "coarse" else train_refiner
    if stage == "refiner":
        train_refiner(cfg, tmp_path / "full", dataset=RandomFaces(), progress=False)
        train_coarse(cfg, tmp_path / "budget", dataset=RandomFaces(), progress=False)
    total = cfg.coarse_iters if stage == "coarse" else cfg.refine_iters
    with pytest.raises(TimeBudgetReached, match=rf"{stage} stopped at iteration 3 of {total}: .*run the same command"):
        train(cfg, tmp_path / "budget", dataset=RandomFaces(), progress=False, deadline=0.0)
    assert load_checkpoint(tmp_path / "budget" / stage / "latest.pt", stage)["iteration"] == 3
    train(cfg, tmp_path / "budget", dataset=RandomFaces(), progress=False, deadline=float("inf"))
    full = load_checkpoint(tmp_path / "full" / stage / "latest.pt", stage)
    resumed = load_checkpoint(tmp_path / "budget" / stage / "latest.pt", stage)
    assert resumed["iteration"] == total
    for name in full["models"]:
        assert states_equal(full["models"][name], resumed["models"][name]), name


def test_command_line_time_budget_exit_code_and_one_line_errors(tmp_path, capsys):
    args = ["both", "--preset", "ci", "--run-dir", str(tmp_path / "run"), "--no-progress", "--set",
            f"data_root={tmp_path / 'data'}", "coarse_iters=4", "refine_iters=2", "log_every=1", "coarse_milestones=()"]
    assert main(args + ["--max-minutes", "0"]) == EXIT_TIME_BUDGET
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "coarse stopped at iteration 1 of 4" in error[0]
    assert not (tmp_path / "run" / "refiner").exists()                  # the refiner waits for its exemplar
    assert (tmp_path / "data" / "manifest.json").is_file()              # built first, on every core
    assert main(args) == 0
    assert load_checkpoint(tmp_path / "run" / "refiner" / "latest.pt", "refiner")["iteration"] == 2
    with pytest.raises(SystemExit) as bad:
        main(["both", "--run-dir", str(tmp_path / "x"), "--set", "no_such_field=1"])
    assert bad.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert main(["refiner", "--run-dir", str(tmp_path / "x"), "--set", f"data_root={tmp_path / 'data'}"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1         # no coarse checkpoint: one line
    wrong_vgg = ["both", "--run-dir", str(tmp_path / "y"), "--set", f"data_root={tmp_path / 'no_data'}",
                 f"vgg_path={tmp_path / 'vgg19.pth'}"]
    assert main(wrong_vgg) == 1 and not (tmp_path / "y").exists() and not (tmp_path / "no_data").exists()
    assert capsys.readouterr().err == (f"hffne_lib.train: VGG19 weights not found at {tmp_path / 'vgg19.pth'} (set by "
                                       "argument); fix the path or unset it to fall back to the hub cache\n")


def test_evaluation_during_training_is_logged_and_changes_nothing(tmp_path):
    cfg = tiny(refine_iters=6, checkpoint_every=3)
    train_coarse(cfg, tmp_path / "plain", dataset=RandomFaces(), progress=False)
    coarse = tmp_path / "plain" / "coarse" / "latest.pt"
    held_out = {"toy_test": RandomFaces(n=4, seed=1)}
    runs = {"plain": dict(cfg=cfg), "measured": dict(cfg=tiny(refine_iters=6, checkpoint_every=3, eval_every=2)),
            "killed": dict(cfg=tiny(refine_iters=6, checkpoint_every=3, eval_every=2), stop_after=5)}
    for name, run in runs.items():
        train_refiner(run["cfg"], tmp_path / name, coarse_checkpoint=coarse, dataset=RandomFaces(), progress=False,
                      eval_datasets=held_out, stop_after=run.get("stop_after"))
    train_refiner(runs["killed"]["cfg"], tmp_path / "killed", coarse_checkpoint=coarse, dataset=RandomFaces(),
                  progress=False, eval_datasets=held_out)           # resumes from iteration 3
    saved = {name: load_checkpoint(tmp_path / name / "refiner" / "latest.pt", "refiner") for name in runs}
    for name in ("measured", "killed"):   # same weights, and the global RNG was left as it was
        assert states_equal(saved["plain"]["models"]["refiner"], saved[name]["models"]["refiner"])
        assert torch.equal(saved["plain"]["rng"]["torch"], saved[name]["rng"]["torch"])
    assert not (tmp_path / "plain" / "refiner" / "eval.csv").exists()
    logs = [read_log(tmp_path / name / "refiner" / "eval.csv").drop(columns="seconds") for name in ("measured", "killed")]
    assert list(logs[0].index) == [2, 4, 6] and logs[0].equals(logs[1])
    assert (logs[0]["toy_test/face/coarse"] > 0).all() and logs[0]["toy_test/face/refined"].nunique() == 3


def test_integrability_warmup_ramps_its_weight_linearly_over_that_fraction_of_the_run(tmp_path):
    assert [linear_ramp(i, 4) for i in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0] and linear_ramp(1, 0) == 1.0
    cfg = tiny(integrability_weight=0.5, integrability_warmup=0.5)   # 6 iterations: ramp over 3
    train_coarse(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    train_refiner(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    log = read_log(tmp_path / "refiner" / "log.csv")
    ramp = torch.tensor([1 / 3, 2 / 3, 1, 1, 1, 1], dtype=torch.float64)
    expected = (torch.tensor(log["reconstruction"].values) + torch.tensor(log["perceptual"].values)
                + 0.5 * ramp * torch.tensor(log["integrability"].values))
    assert torch.allclose(torch.tensor(log["loss"].values), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="integrability_warmup is a fraction of refine_iters in \\[0, 1\\], got 1.5"):
        tiny(integrability_warmup=1.5)


def test_bf16_autocast_trains_every_term_beyond_the_paper(tmp_path, monkeypatch):
    """The gpu preset trains under bf16 autocast (``amp``), which Runtime turns on on CUDA only.
    Forced on here, on CPU, Table 1's beyond-the-paper refiner (with a fit target and a weight
    average too) trains to finite losses other than fp32's (autocast was on), as its first gpu-preset
    run will have to (scripts/gpu_check.sh trains it there)."""
    monkeypatch.setattr(Runtime, "autocast", lambda self, enabled: bf16_autocast(self.device, enabled))
    beyond = experiments(tiny())[BEYOND_PAPER_ROW].overrides
    logs = []
    for amp in (False, True):
        cfg = tiny(amp=amp, coarse_iters=2, refine_iters=2, coarse_milestones=(), fit_target_steps=2,
                   refine_ema_halflife=2, **beyond)
        train_coarse(cfg, tmp_path / f"amp{amp}", dataset=RandomFaces(), progress=False)
        train_refiner(cfg, tmp_path / f"amp{amp}", dataset=RandomFaces(), progress=False)
        logs.append(read_log(tmp_path / f"amp{amp}" / "refiner" / "log.csv"))
    assert all(torch.isfinite(torch.tensor(log.values)).all() for log in logs)
    assert list(logs[1].columns) == ["seconds", "loss", "reconstruction", "perceptual", "shading", "integrability"]
    assert not torch.allclose(torch.tensor(logs[0]["loss"].values), torch.tensor(logs[1]["loss"].values), rtol=1e-6)


def test_fit_target_makes_the_exemplars_fit_the_target_and_leaves_the_exemplar_the_input(tmp_path):
    """A residual refiner outputs its input exemplar before its first step, so the first logged
    reconstruction term is 0 with the exemplar as target, and smooth-L1(exemplar, its fit) with
    fit_target_steps: the fit is the target, the exemplar still the input."""
    cfg = tiny(refiner__residual=True, refine_iters=1)
    train_coarse(cfg, tmp_path, dataset=RandomFaces(), progress=False)
    first = {}
    for steps in (0, 3):
        stage = f"fit{steps}"
        train_refiner(tiny(refiner__residual=True, refine_iters=1, fit_target_steps=steps), tmp_path,
                      stage_name=stage, dataset=RandomFaces(), progress=False)
        first[steps] = read_log(tmp_path / stage / "log.csv")["reconstruction"].loc[1]
    faces = RandomFaces()
    batch = next(iter(SeededBatchSampler(len(faces), cfg.refine_batch, cfg.seed, 0, 1)))
    gray, mask = faces.gray[batch], faces.mask[batch]
    coarse, _ = load_coarse(tmp_path / "coarse" / "latest.pt")
    with torch.no_grad():
        exemplar = coarse(gray)
    expected = torch.nn.functional.smooth_l1_loss(exemplar, fit_normals(FitSettings(steps=3), exemplar, gray, mask))
    assert first[0] < 1e-12 and expected > 1e-7
    assert first[3] == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(ValueError, match="fit_target_steps is a number of Adam steps >= 0"):
        tiny(fit_target_steps=-1)


def test_weight_average_decays_with_a_ramped_half_life_over_weights_and_batchnorm_statistics():
    assert ema_decay(1000, 100) == 0.5 ** (1 / 100)       # past the ramp: the half-life itself
    assert ema_decay(40, 100) == 0.5 ** (1 / 10)          # ramping: a quarter of the updates so far
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.zero_()
    average = weight_average(model, halflife=3.0)
    average.update_parameters(model)                     # the first update copies
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(2.0)
    for _ in range(20):
        average.update_parameters(model)
    kept = torch.tensor([ema_decay(n, 3.0) for n in range(1, 21)], dtype=torch.float64).prod().item()
    assert average.module[0].weight.item() == pytest.approx(1 - kept, rel=1e-5)
    assert average.module[1].running_mean.item() == pytest.approx(2 * (1 - kept), rel=1e-5)
    with pytest.raises(ValueError, match="refine_ema_halflife is a half-life in iterations >= 0"):
        tiny(refine_ema_halflife=-1)


def test_weight_average_leaves_training_alone_resumes_exactly_and_is_what_is_evaluated_and_loaded(tmp_path):
    plain, averaged = tiny(eval_every=3), tiny(eval_every=3, refine_ema_halflife=2.0)
    train_coarse(plain, tmp_path / "plain", dataset=RandomFaces(), progress=False)
    coarse = tmp_path / "plain" / "coarse" / "latest.pt"
    held_out = {"toy_test": RandomFaces(n=4, seed=1)}
    runs = {"plain": (plain, None), "averaged": (averaged, None), "killed": (averaged, 4)}
    for name, (cfg, stop_after) in runs.items():
        train_refiner(cfg, tmp_path / name, coarse_checkpoint=coarse, dataset=RandomFaces(), progress=False,
                      eval_datasets=held_out, stop_after=stop_after)
    train_refiner(averaged, tmp_path / "killed", coarse_checkpoint=coarse, dataset=RandomFaces(), progress=False,
                  eval_datasets=held_out)               # resumes from its checkpoint at iteration 5
    saved = {name: load_checkpoint(tmp_path / name / "refiner" / "latest.pt", "refiner") for name in runs}
    assert WEIGHT_AVERAGE not in saved["plain"]["models"]
    assert states_equal(saved["plain"]["models"]["refiner"], saved["averaged"]["models"]["refiner"])
    for name in ("refiner", WEIGHT_AVERAGE):
        assert states_equal(saved["averaged"]["models"][name], saved["killed"]["models"][name]), name
    average = saved["averaged"]["models"][WEIGHT_AVERAGE]
    assert average["n_averaged"].item() == 6
    loaded, _ = load_refiner(tmp_path / "averaged" / "refiner" / "latest.pt")
    assert states_equal(loaded.state_dict(), {k.removeprefix("module."): v for k, v in average.items() if k != "n_averaged"})
    assert not states_equal(loaded.state_dict(), saved["averaged"]["models"]["refiner"])
    logs = {name: read_log(tmp_path / name / "refiner" / "eval.csv").drop(columns="seconds") for name in runs}
    assert logs["averaged"].equals(logs["killed"])
    column = "toy_test/face/refined"
    assert (logs["averaged"][column] != logs["plain"][column]).all()   # the average is what is measured


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny(coarse_iters=12, checkpoint_every=2, coarse_milestones=())
    poisoned = RandomFaces(nan_after=4 * 7)  # batches of 4: iteration 8 is the first with NaN
    with pytest.raises(NonFiniteLossError, match=r"at iteration 8; training stopped, last good checkpoint"):
        train_coarse(cfg, tmp_path, dataset=poisoned, progress=False)
    saved = load_checkpoint(tmp_path / "coarse" / "latest.pt", "coarse")
    assert saved["iteration"] == 6
    assert all(torch.isfinite(v).all() for v in saved["models"]["generator"].values() if v.is_floating_point())


def test_losses_read_only_to_log_or_save_still_stop_a_nan_before_it_is_saved(tmp_path):
    """log_every 5, checkpoints every 4: NaN from iteration 6 is first read at 8, where a save is
    due; the run stops there and keeps iteration 4's checkpoint."""
    cfg = tiny(coarse_iters=12, log_every=5, checkpoint_every=4, coarse_milestones=())
    with pytest.raises(NonFiniteLossError, match=r"at iteration 8; training stopped, last good checkpoint"):
        train_coarse(cfg, tmp_path, dataset=RandomFaces(nan_after=4 * 5), progress=False)
    assert load_checkpoint(tmp_path / "coarse" / "latest.pt", "coarse")["iteration"] == 4
    assert list(read_log(tmp_path / "coarse" / "log.csv").index) == [5]


def test_shading_term_is_zero_for_the_true_shape_and_grows_with_detail_error():
    torch.manual_seed(0)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 32, 32) * 0.3 + torch.tensor([0, 0, 1.0]).view(1, 3, 1, 1), dim=1)
    light = torch.tensor([0.3, 0.2, 0.6])
    gray = (normals * light.view(1, 3, 1, 1)).sum(1, keepdim=True) + 0.1
    mask = torch.ones(2, 1, 32, 32)
    smooth = torch.nn.functional.normalize(torch.nn.functional.avg_pool2d(normals, 5, 1, 2), dim=1)
    exact = high_frequency_shading_loss(normals, gray, normals, mask, sigma=2.0)
    from_smooth_exemplar = high_frequency_shading_loss(normals, gray, smooth, mask, sigma=2.0)
    wrong = high_frequency_shading_loss(smooth, gray, smooth, mask, sigma=2.0)
    assert exact < 1e-5 and from_smooth_exemplar < 0.5 * wrong


def _stepped_weights(optimizers: list, model: torch.nn.Module) -> torch.Tensor:
    """This process's live weights of ``model``'s kind: those of the optimiser that stepped them."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    stepped = next(o for o in optimizers if len(o.param_groups[0]["params"]) == len(trainable))
    return torch.cat([p.detach().flatten() for p in stepped.param_groups[0]["params"]])


def _ddp_worker(rank: int, port: int, run_dir: str, results: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    cfg = tiny(coarse_iters=4, refine_iters=2, checkpoint_every=4, coarse_milestones=())
    optimizers = []
    hook = register_optimizer_step_post_hook(lambda opt, *_: optimizers.append(opt) if opt not in optimizers else None)
    try:
        in_sync = {}
        for stage, train in (("coarse", train_coarse), ("refiner", train_refiner)):
            optimizers.clear()
            train(cfg, run_dir, dataset=RandomFaces(), progress=False)
            # no collective inside: every rank leaves after rank 0's last save, and reads it here
            saved = load_coarse if stage == "coarse" else load_refiner
            model, payload = saved(f"{run_dir}/{stage}/latest.pt")
            mine = _stepped_weights(optimizers, model)
            both = [None, None]
            dist.all_gather_object(both, mine)
            checkpoint = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
            in_sync[stage] = (torch.equal(both[0], both[1]), torch.equal(mine, checkpoint), payload["iteration"])
        hook.remove()
        stopped = []
        try:   # NaN images on rank 1 only: both stop at once, rank 0 saves nothing and waits for no one
            train_coarse(cfg, f"{run_dir}/nan", dataset=RandomFaces(nan_after=0 if rank else None), progress=False)
        except NonFiniteLossError as err:
            stopped.append(str(err))
        try:   # a loss that is NaN on rank 1 alone (in training the NaN reaches rank 0 through the gradients)
            check_finite({"loss": torch.tensor(float("nan") if rank else 0.5)}, 7, Path(run_dir), setup_runtime(cfg))
        except NonFiniteLossError as err:
            stopped.append(str(err))
        results[rank] = (in_sync, stopped)
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes(tmp_path):
    """Both stages on two processes: the same weights on both, and the checkpoint holds them. The
    coarse stage's discriminator runs twice before its backward, which DDP's in-place buffer copy
    broke on torch < 2.13 (train.NO_FORWARD_BUFFER_SYNC)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(port, str(tmp_path), results), nprocs=2, join=True)
    results = dict(results)
    expected = {"coarse": (True, True, 4), "refiner": (True, True, 2)}
    assert [results[rank][0] for rank in (0, 1)] == [expected] * 2  # in sync, checkpoint = their weights
    assert all(results[rank][1][0].endswith("at iteration 1; training stopped, no checkpoint was written yet")
               for rank in (0, 1)) and not (tmp_path / "nan" / "coarse" / "latest.pt").exists()
    assert results[0][1][1].startswith("a non-finite loss or weight on another process at iteration 7")
    assert results[1][1][1].startswith("loss loss = nan at iteration 7")


def test_weights_made_non_finite_by_a_finite_loss_are_not_saved(tmp_path):
    model = torch.nn.Linear(2, 2)
    losses = {"loss": torch.tensor(0.5)}
    assert check_finite(losses, 3, tmp_path, Runtime(torch.device("cpu")), [model]) == {"loss": 0.5}
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    assert check_finite(losses, 3, tmp_path, Runtime(torch.device("cpu"))) == {"loss": 0.5}   # weights unchecked
    with pytest.raises(NonFiniteLossError, match=r"^non-finite weights at iteration 3; training stopped, no checkpoint"):
        check_finite(losses, 3, tmp_path, Runtime(torch.device("cpu")), [model])


def test_repeated_set_options_all_apply():
    args, cfg = parse_command_line(["both", "--preset", "cpu", "--run-dir", "runs/x", "--set", "data_root=elsewhere",
                                    "--set", "eval_every=250", "refiner__architecture=A1"])
    assert (cfg.data_root, cfg.eval_every, cfg.refiner.architecture) == ("elsewhere", 250, "A1")
    assert args.stage == "both" and cfg.name == "cpu"


@pytest.mark.parametrize("setting, message", [
    ("refine_iters=abc", "setting refine_iters takes int, got 'abc'"),
    ("coarse_iters=3.5", "setting coarse_iters takes int, got 3.5"),
    ("amp=yes", "setting amp takes bool, got 'yes'"),
    ("paired=1", "setting paired takes bool, got 1"),
    ("refiner__base_width=wide", "setting refiner__base_width takes int, got 'wide'"),
    ("vgg_path=3", "setting vgg_path takes str | None, got 3"),
    ("seed__name=x", "unknown config field 'seed__name'"),
    ("refine_batch=0", "refine_batch must be at least 1, got 0"),
    ("log_every=0", "log_every must be at least 1, got 0"),
    ("refine_iters=-5", "refine_iters must be 0 or more, got -5"),
    ("refine_lr=0.0", "refine_lr must be above 0, got 0.0"),
    ("data_preset=big", "unknown data_preset 'big'; choose one of ['ci', 'cpu', 'gpu', 'paper']"),
    ("perceptual_layer=relu9_9", "unknown perceptual_layer 'relu9_9'; choose one of ['relu1_2', "),
    # a blur as wide as the image used to pass, then crash in reflect padding mid-training
    ("shading_sigma=50.0", "shading_sigma is a Gaussian sigma in px: 0 or more and under a third of the 128 px"),
    ("reconstruction_sigma=-1.0", "reconstruction_sigma is a Gaussian sigma in px: 0 or more"),
    ("refiner__residual=True refiner__residual_highpass=43.0", "refiner__residual_highpass is a Gaussian sigma"),
    # an exemplar milestone the coarse stage never saves used to fail only after training it
    ("exemplar_iteration=7", "exemplar_iteration 7 is not a coarse checkpoint this run keeps: use one of "
                             "coarse_milestones (6, 300, 600) up to coarse_iters=1200"),
    ("coarse_iters=200 exemplar_iteration=300", "exemplar_iteration 300 is not a coarse checkpoint this run keeps"),
    ("split_roots=wild_train", "setting split_roots takes tuple[str, ...], got 'wild_train'"),
    ("split_roots=('wild=data/x',)", "split_roots holds 'split=folder' entries"),
    ("split_roots=('wild_train=a','wild_train=b')", "split_roots holds 'split=folder' entries, one per split"),
])
def test_a_setting_of_the_wrong_type_or_range_is_refused_in_one_line(setting, message, capsys):
    with pytest.raises(SystemExit) as bad:
        parse_command_line(["both", "--preset", "cpu", "--run-dir", "runs/x", "--set", *setting.split()])
    err = capsys.readouterr().err
    assert bad.value.code == 2 and err.startswith(f"python -m hffne_lib.train: {message}") and err.count("\n") == 1


def test_asking_for_cuda_without_it_is_a_one_line_error_that_names_the_way_out(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device 'cuda' asked for but CUDA is not available here; use cpu$"):
        setup_runtime(get_config("gpu"))
    with pytest.raises(ValueError, match=r"^unknown device 'gpu': use cpu, cuda or cuda:N$"):
        setup_runtime(get_config("cpu", device="gpu"))


def test_an_unknown_device_is_refused_before_the_benchmark_is_built(tmp_path, capsys):
    data_root = tmp_path / "bench"
    assert main(["coarse", "--preset", "ci", "--run-dir", str(tmp_path / "run"), "--no-progress",
                       "--set", f"data_root={data_root}", "device=nodevice"]) == 1
    assert capsys.readouterr().err == "hffne_lib.train: unknown device 'nodevice': use cpu, cuda or cuda:N\n"
    assert not data_root.exists() and not (tmp_path / "run").exists()


def test_settings_take_a_number_for_a_float_a_list_for_a_tuple_and_none_where_allowed():
    cfg = get_config("cpu", shading_weight=3, coarse_milestones=[6, 300], exemplar_iteration=None, vgg_path="/w.pth")
    assert (cfg.shading_weight, cfg.coarse_milestones, cfg.exemplar_iteration, cfg.vgg_path) == (3, (6, 300), None, "/w.pth")


def test_a_count_that_is_negative_or_no_whole_number_is_refused_however_the_config_is_made():
    """Notebook 02 assigned eval_every after the config was checked: -1 or 2.5 then measured the
    test splits every iteration. It now goes through with_overrides, and the config itself checks."""
    import numpy as np

    from hffne_lib.config import ExperimentConfig
    from hffne_lib.experiments import refine_eval_every

    cfg = get_config("ci")
    for value, message in ((-1, "eval_every must be 0 or more, got -1"),
                           (2.5, "eval_every must be a whole number, got 2.5"),
                           (True, "eval_every must be a whole number, got True")):
        with pytest.raises(ValueError, match=f"^{message}$"):
            ExperimentConfig(eval_every=value)
        with pytest.raises(ValueError, match="eval_every"):
            with_overrides(cfg, eval_every=refine_eval_every(cfg, value))     # notebook 02's route
    with pytest.raises(ValueError, match=r"^refine_iters must be a whole number, got 1500.0$"):
        ExperimentConfig(refine_iters=1500.0)
    assert with_overrides(cfg, eval_every=refine_eval_every(cfg, None)).eval_every == cfg.refine_iters // 5
    assert ExperimentConfig(eval_every=np.int64(3)).eval_every == 3      # a numpy count is a whole number


def test_the_default_data_root_is_where_the_data_command_builds(tmp_path, monkeypatch):
    """Without data_root the training commands read data/synthetic_<data preset>: the data
    command's default folder, so `python -m hffne_lib.data` then `... train` needs no --set."""
    from hffne_lib.data import FaceNormalDataset
    from hffne_lib.data.__main__ import main as data_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("the repository's data/ holds a README")
    assert data_main(["--preset", "ci", "--workers", "2", "--no-progress"]) == 0
    _, cfg = parse_command_line(["both", "--preset", "smoke", "--run-dir", "runs/x"])
    assert cfg.data_root == str(Path("data") / "synthetic_ci")
    assert len(FaceNormalDataset(cfg.data_root, "lab_test")) > 0
    assert get_config("cpu").data_root == str(Path("data") / "synthetic_cpu")
    assert get_config("cpu", data_preset="gpu").data_root == str(Path("data") / "synthetic_gpu")  # follows
    assert get_config("cpu", data_root="mine", data_preset="gpu").data_root == "mine"
    assert with_overrides(get_config("cpu", data_root="mine"), data_preset="gpu").data_root == "mine"


def test_channels_last_converts_the_conv_weights_and_keeps_the_refiners_5d_weights_and_outputs():
    """Module.to(memory_format=channels_last) raises on the refiner's 5-D modulated weights
    (torch 2.11, seen on the H200); the gpu preset's channels_last goes through to_channels_last."""
    from hffne_lib.refiner import Refiner, RefinerConfig

    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(base_width=8, code_dim=16)).eval()
    with pytest.raises(RuntimeError, match="rank 4"):
        Refiner(RefinerConfig(base_width=8, code_dim=16)).to(memory_format=torch.channels_last)
    gray, exemplar = torch.rand(2, 1, 64, 64), torch.nn.functional.normalize(torch.randn(2, 3, 64, 64), dim=1)
    with torch.no_grad():
        before = refiner(gray, exemplar)
        to_channels_last(refiner)
        after = refiner(gray.contiguous(memory_format=torch.channels_last),
                        exemplar.contiguous(memory_format=torch.channels_last))
    tensors = [*refiner.parameters(), *refiner.buffers()]
    assert any(t.dim() == 5 for t in tensors) and sum(t.dim() == 4 for t in tensors) > 10
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in tensors if t.dim() == 4)
    assert all(t.is_contiguous() for t in tensors if t.dim() != 4)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_adam_is_fused_on_cuda_only_and_makes_the_same_update():
    """The training loops' Adam: fused on CUDA (as the benchmark's optimised path), torch's default
    elsewhere, so CPU numbers do not move; the fused update is the same maths."""
    torch.manual_seed(0)
    start, grad = torch.randn(50), torch.randn(50)
    updated = {}
    for device in ("cpu", "cuda"):
        param = torch.nn.Parameter(start.clone())
        optimizer = make_adam([param], 1e-2, (0.9, 0.99), Runtime(torch.device(device)))
        assert optimizer.defaults["fused"] is (True if device == "cuda" else None)
        param.grad = grad.clone()
        optimizer.step()       # the fused kernel has a CPU build: the CUDA branch runs here too
        updated[device] = param.detach()
    assert not torch.equal(updated["cpu"], start)
    torch.testing.assert_close(updated["cuda"], updated["cpu"])


def test_a_resumed_log_keeps_the_columns_it_no_longer_writes(tmp_path):
    """eval_splits may change on resume: the rows already written keep their splits' columns
    (the log used to be left as a header only, then the run failed in DictWriter)."""
    from hffne_lib.train import LossLog

    path = tmp_path / "eval.csv"
    first = LossLog(path, ["scans/face/coarse", "lab_test/face/coarse"], start=0)
    first.write(5, 1.0, {"scans/face/coarse": 10.0, "lab_test/face/coarse": 7.0})
    first.write(10, 2.0, {"scans/face/coarse": 9.0, "lab_test/face/coarse": 6.0})
    resumed = LossLog(path, ["scans/face/coarse"], start=5)
    resumed.write(10, 2.5, {"scans/face/coarse": 8.5})
    log = read_log(path)
    assert list(log.index) == [5, 10] and list(log["scans/face/coarse"]) == [10.0, 8.5]
    assert log.loc[5, "lab_test/face/coarse"] == 7.0 and math.isnan(log.loc[10, "lab_test/face/coarse"])
    assert not list(tmp_path.glob("*.tmp"))


def test_the_refiner_trains_on_real_photos_that_split_roots_names(tmp_path, capsys):
    """Photos prepared without ground truth stand in for the benchmark's wild_train: they batch with
    its lab_train, the checkpoint's data hash covers both folders, and the coarse stage's does not."""
    from hffne_lib.data import FaceNormalDataset, make_identity, manifest_hash, prepare_wild_photos, render_sample
    from hffne_lib.data.images import save_image
    from hffne_lib.evaluate import check_evaluable, main as evaluate_main
    from hffne_lib.pipeline import NormalEstimator
    from hffne_lib.train import data_manifest_hash, open_split, refinement_data

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):   # face crops already, as FFHQ's: no detection
        save_image(photos / f"{k}.png", render_sample(make_identity(k, "wild", 9, 64), "wild", 0, 9, 64)["rgb"].permute(1, 2, 0).numpy())
    prepare_wild_photos(photos, tmp_path / "wild", size=64, aligned=True, progress=False)
    data_root, roots = tmp_path / "data", f"split_roots=('wild_train={tmp_path / 'wild'}',)"
    args = ["both", "--preset", "ci", "--run-dir", str(tmp_path / "run"), "--no-progress", "--set",
            f"data_root={data_root}", "coarse_iters=2", "refine_iters=2", "coarse_milestones=()", roots]
    assert main(args) == 0
    cfg = get_config("ci", data_root=str(data_root), split_roots=(f"wild_train={tmp_path / 'wild'}",))
    inputs = refinement_data(cfg)
    assert len(inputs) == 3 + len(FaceNormalDataset(data_root, "lab_train"))
    assert set(inputs[0]) == set(inputs[len(inputs) - 1]) == {"gray", "rgb", "mask"}   # a photo, a lab item
    assert torch.equal(inputs[1]["rgb"], open_split(cfg, "wild_train")[1]["rgb"])
    refiner = load_checkpoint(tmp_path / "run" / "refiner" / "latest.pt", "refiner")
    coarse = load_checkpoint(tmp_path / "run" / "coarse" / "latest.pt", "coarse")
    assert coarse["manifest_hash"] == manifest_hash(data_root) == data_manifest_hash(cfg, ("lab_train",))
    assert refiner["manifest_hash"] == data_manifest_hash(cfg, cfg.refine_splits) != manifest_hash(data_root)
    capsys.readouterr()
    assert evaluate_main([str(tmp_path / "run"), "--splits", "scans", "--no-progress"]) == 0   # from data_root
    with pytest.raises(ValueError, match="photos without ground truth, nothing to measure against"):
        check_evaluable(NormalEstimator.from_checkpoints(tmp_path / "run" / "coarse" / "latest.pt",
                                                         tmp_path / "run" / "refiner" / "latest.pt"),
                        open_split(cfg, "wild_train"), "wild_train")
    moved = with_overrides(cfg, split_roots=(f"wild_train={tmp_path / 'moved'}",))
    with pytest.raises(FileNotFoundError, match=f"split_roots: no data set at {tmp_path / 'moved'} for wild_train"):
        open_split(moved, "wild_train")
