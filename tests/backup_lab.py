"""Helpers for tests that make backups in the lab: an inventory with a backup area of its own."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab import topology
from runbooks import manifest as mf
from runbooks.connect import ssh_host
from runbooks.inventory import Site, expand_environment

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"


def write_inventory(directory: Path, area: str, *, retention: int = 7, both: bool = True) -> Path:
    """config/lab.yaml with its local paths made absolute and a backup area of the test's own."""
    data = yaml.safe_load(LAB_CONFIG.read_text())
    base = LAB_CONFIG.parent

    def absolute(value: str) -> str:
        value = expand_environment(value)
        return value if Path(value).is_absolute() else str((base / value).resolve())

    for key in ("env_file", "known_hosts"):
        if data.get(key):
            data[key] = absolute(data[key])
    for host in data["hosts"].values():
        if host["key"] != "agent":
            host["key"] = absolute(host["key"])
    for backend in data["tickets"]:
        if backend["type"] == "file":
            backend["path"] = absolute(backend["path"])
    data["backups"].update(area=area, retention=retention, user_db_to_both_servers=both)
    path = directory / f"{area}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def remove_backup_area(site: Site) -> None:
    """Remove the site's backup area from both backup servers."""
    for role in ("backup_even", "backup_odd"):
        with ssh_host(site, role) as host:
            host.run(mf.remove_tree_argv(site.backups.area))
