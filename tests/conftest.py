"""Shared fixtures. Tests never see the operator's real ~/.ssh, OVH credentials or Prefect home."""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ovh.config
import pytest

from lab import topology


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway HOME and Prefect home; no OVH_* variables, so no real credential is read."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("OVH_"):
            del os.environ[name]
    os.environ["HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / ".prefect")
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # The ovh package reads /etc/ovh.conf, ~/.ovh.conf and ./ovh.conf once, when imported;
    # forget whatever it found there so no test ever uses a real OVH credential.
    ovh.config.config.config = configparser.RawConfigParser()
    ovh.config.CONFIG_PATH = [str(home / ".ovh.conf")]
    yield home
    os.environ.clear()
    os.environ.update(saved)


@dataclass(frozen=True)
class LabHandle:
    """What tests need to reach the running lab."""

    paths: topology.LabPaths
    secrets: dict[str, str]
    hosts: tuple[topology.LabHost, ...]
    started_here: bool  # True when this session brought the lab up (and takes it down)

    def host(self, name: str) -> topology.LabHost:
        return topology.host(name)


@pytest.fixture(scope="session")
def lab(_isolated_environment: Path) -> Iterator[LabHandle]:
    """The local lab, running: brought up (through lab.api) unless it already runs.

    When this session started it, it is stopped again at the end; a lab someone had running
    before the tests stays running. Mark tests that use it with `@pytest.mark.lab`.
    """
    # Imported here: unit-test sessions need none of the lab's database drivers.
    from lab import api as lab_api
    from lab.secrets import load_secrets

    started_here = not lab_api.status().all_running
    if started_here:
        lab_api.up()
    paths = topology.paths()
    yield LabHandle(
        paths=paths, secrets=load_secrets(paths), hosts=topology.HOSTS, started_here=started_here
    )
    if started_here:
        lab_api.down()
