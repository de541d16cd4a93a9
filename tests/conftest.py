"""Shared fixtures: the real-data folder (skip when absent) and temporary outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# TWIN_SHARED_DATA points elsewhere, e.g. from a git worktree that has no ../shared beside it.
SHARED_DATA = Path(os.environ.get("TWIN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data beside the checkout)")
    return path


@pytest.fixture
def shared_data_dir() -> Path:
    return shared_data()
