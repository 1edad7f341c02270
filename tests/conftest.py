"""Shared fixtures. Tests never see the operator's real ~/.ssh, OVH credentials or Prefect home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway HOME and Prefect home; no OVH_* variables, so no real credential is read."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("OVH_"):
            del os.environ[name]
    os.environ["HOME"] = str(home)
    os.environ.setdefault("PREFECT_HOME", str(home / ".prefect"))
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    yield home
    os.environ.clear()
    os.environ.update(saved)
