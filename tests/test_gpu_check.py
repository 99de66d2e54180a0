"""scripts/gpu_check.sh, dry-run on the CPU at the ci preset: every step, the budget, the outputs."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hffne_lib.config import get_config
from hffne_lib.data import build_benchmark

REPO = Path(__file__).resolve().parents[1]


def _run(out: Path, budget: int, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    (out / "log.txt").unlink(missing_ok=True)
    result = subprocess.run(["bash", "scripts/gpu_check.sh", str(out), str(budget)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=budget + 120)
    return result, (out / "log.txt").read_text()


def _seconds_used(log: str) -> int:
    return int(log.rsplit("=== [", 1)[1].split(" s of")[0])


@pytest.fixture(scope="module")
def ci_data(tmp_path_factory) -> Path:
    """The ci preset's benchmark, built before the script's clock starts: its data step then finds
    it finished, and the budget is not spent on a build that takes 2-3 times as long on a busy
    machine (xdist's other worker), which left the coarse stage under MIN_STAGE_SECONDS."""
    root = tmp_path_factory.mktemp("data")
    build_benchmark(root, get_config("ci").data_preset, progress=False)
    return root


def test_dry_run_keeps_the_budget_and_returns_every_step(tmp_path, shared_dir, ci_data):
    out = tmp_path / "out"
    env = {**os.environ, "PRESET": "ci", "DEVICE": "cpu", "SKIP_BENCH": "1", "PYTHON": sys.executable,
           "RUN_DIR": str(tmp_path / "run"), "DATA_ROOT": str(ci_data),
           "REAL_FACES": str(shared_dir / "data" / "real_faces"),
           "EXTRA_MIN_SECONDS": "30",   # enough left for the beyond-the-paper stage (about 20 s here)
           "TRAIN_SET": "coarse_iters=6 refine_iters=4 log_every=1 coarse_milestones=()"}
    result, log = _run(out, 240, env)
    assert result.returncode == 0, log[-2000:]
    assert "coarse: finished" in log and "refiner: finished" in log
    assert "beyond the paper: refiner_residual_hf3_presmooth_integrable (refiner__residual=True " in log
    assert "refiner_residual_hf3_presmooth_integrable: finished" in log
    assert _seconds_used(log) <= 240
    with tarfile.open(out / "results.tar.gz") as archive:
        names = set(archive.getnames())
        evaluation = archive.extractfile("./evaluation/evaluation.md").read().decode()
    assert "- fitted: test-time fitting (beyond the paper): steps=20," in evaluation   # FIT_STEPS' default
    assert [c.strip() for c in evaluation.split("| split", 1)[1].splitlines()[0].split("|")][2:5] == \
        ["coarse", "refined", "fitted"]
    assert {"./evaluation/evaluation.md", "./evaluation/summary.csv", "./real_faces/overall.csv",
            "./real_faces/comparison.png", "./run/coarse/log.csv", "./run/refiner/log.csv",
            "./predictions/182716/face0_sheet.png", "./run/refiner_residual_hf3_presmooth_integrable/log.csv",
            "./evaluation_refiner_residual_hf3_presmooth_integrable/evaluation.md"} <= names
    assert "13 done" in log and not any(n.endswith(".npy") for n in names)

    # a second call (as made at once on the same machine) returns the first one's outputs and
    # redoes nothing: both stages are finished, the evaluation and real-photo step newer than them
    env["EXTRA_MIN_SECONDS"] = "100000"
    result, log = _run(out, 60, env)
    assert result.returncode == 0, log[-2000:]
    assert "coarse: finished already (iteration 6 of 6)" in log and "refiner: finished already (iteration 4 of 4)" in log
    assert "evaluation/evaluation.md: up to date" in log and "real_faces/overall.csv: up to date" in log
    assert "hffne_lib.evaluate: wrote" not in log and "13 done" not in log
    with tarfile.open(out / "results.tar.gz") as archive:
        assert names <= set(archive.getnames())


def test_a_coarse_stage_cut_short_takes_the_time_and_the_refiner_waits_for_it(tmp_path, ci_data):
    """The refiner learns from the final exemplars: it is not trained on a coarse stage that is
    still going (a later call would find it stale); the coarse stage uses the time instead."""
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "REAL_FACES"}
    env.update({"PRESET": "ci", "DEVICE": "cpu", "SKIP_BENCH": "1", "PYTHON": sys.executable, "MIN_STAGE_SECONDS": "5",
                "RUN_DIR": str(tmp_path / "run"), "DATA_ROOT": str(ci_data),
                "TRAIN_SET": "coarse_iters=100000 refine_iters=4 log_every=1 coarse_milestones=()"})
    result, log = _run(out, 90, env)
    assert result.returncode == 0, log[-2000:]
    assert "coarse: cut short by the time budget" in log
    assert "refiner: not started, the coarse stage has not finished" in log
    assert not (tmp_path / "run" / "refiner").exists() and _seconds_used(log) <= 90
