"""Shared fixtures. ../shared is reached only here (tests), through HFFNE_SHARED or its default."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The developers' ../shared folder (set HFFNE_SHARED to point elsewhere)."""
    path = Path(os.environ.get("HFFNE_SHARED", REPO.parent / "shared"))
    if not path.is_dir():
        pytest.fail(f"shared folder not found at {path}; set HFFNE_SHARED")
    return path
