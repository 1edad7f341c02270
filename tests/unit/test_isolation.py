"""Tests never see the operator's real SSH keys, OVH credentials or Prefect home."""

from __future__ import annotations

import os
from pathlib import Path

import ovh.config


def test_home_is_a_throwaway_directory(_isolated_environment: Path) -> None:
    assert Path.home() == _isolated_environment
    assert not (Path.home() / ".ssh").exists()
    assert os.environ["PREFECT_HOME"].startswith(str(_isolated_environment))


def test_no_ovh_credentials_from_the_environment_or_files() -> None:
    assert not [name for name in os.environ if name.startswith("OVH_")]
    assert ovh.config.config.config.sections() == []
    assert ovh.config.config.get("ovh-eu", "application_key") is None
