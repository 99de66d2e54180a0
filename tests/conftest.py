"""Shared fixtures. ../shared is reached only here (tests), through HFFNE_SHARED or its default."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
