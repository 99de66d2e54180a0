"""Shared fixtures. ../shared is reached only here (tests), through HFFNE_SHARED or its default."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_TEST_WORKERS = 4   # more buys little: the slowest test alone takes about 2 of the 6 minutes


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``pytest -n auto`` (make test): one worker per core this process may use, up to
    MAX_TEST_WORKERS (xdist's own count, psutil's physical cores, ignores the affinity mask)."""
    from hffne_lib.data.benchmark import available_cores

    return max(1, min(MAX_TEST_WORKERS, available_cores()))


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, each worker's torch and the commands its tests start (OMP_NUM_THREADS is
    inherited) get that worker's share of the cores rather than all of them each."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        from hffne_lib.data.benchmark import available_cores

        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // workers)))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The developers' ../shared folder (real photos, the authors' released files; set HFFNE_SHARED
    to point elsewhere). Users do not have it: without it the tests that need it are skipped, with
    the reason, except in CI (the environment variable CI set), where every test must run."""
    path = Path(os.environ.get("HFFNE_SHARED", REPO.parent / "shared"))
    if not path.is_dir():
        message = f"the developers' shared folder is not at {path} (set HFFNE_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
