"""Nothing waits forever: a backup server whose commands hang (as on a hung file system) is named
by `drp plan` within the inventory's command timeout, and the plan goes on with the other server
when that one holds what is needed."""

from __future__ import annotations

import pwd
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from backup_lab import write_inventory
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups

from runbooks import connect
from runbooks.backups import choose_sets
from runbooks.inventory import Site, load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

TIMEOUT = 4  # timeouts.command_seconds of the test's inventory
HANG = 120  # how long a hung host's commands wait: far beyond the timeout


@contextmanager
def hung(site: Site, role: str) -> Iterator[None]:
    """Every command on the host hangs before it starts: sshd runs the user's ~/.ssh/rc first,
    and it sleeps, as a command does whose file system stopped answering."""
    user = connect.host(site, role).user  # type: ignore[arg-type]
    rc = Path(pwd.getpwnam(user).pw_dir) / ".ssh" / "rc"
    rc.write_text(f"sleep {HANG}\n")
    try:
        yield
    finally:
        rc.unlink()
        subprocess.run(["pkill", "-u", user, "-x", "sleep"], check=False)


def _lines(done: object) -> str:
    return getattr(done, "stdout", "") + getattr(done, "stderr", "")


def test_a_hung_backup_server_is_named_by_the_plan_within_its_timeout(
    lab, prefect_server, tmp_path: Path
) -> None:
    site = load_site(LAB_CONFIG)
    ensure_backups(site)
    newest = choose_sets(site).environments["app"].trees[0].set.server
    other = "backup-odd" if newest == "backup-even" else "backup-even"
    inventory = write_inventory(tmp_path, "backups")  # the lab's own backups
    data = yaml.safe_load(inventory.read_text())
    data["timeouts"] = {"command_seconds": TIMEOUT}
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    # The server without the newest set hangs: the plan names it and uses the other one.
    with hung(site, connect.backup_role(site, other)):
        started = time.monotonic()
        done = drp_cli(prefect_server.api_url, "plan", "activate", "-c", str(inventory),
                       timeout=HANG - 30)  # fmt: skip
        took = time.monotonic() - started
    output = " ".join(_lines(done).split())  # rich wraps long lines
    assert done.returncode == 0, output  # the other server's sets are restorable
    assert f"{other} could not be read: did not answer within {TIMEOUT} s" in output, output
    assert "its sets are not considered" in output and "timeouts.command_seconds" in output
    print(f"plan with {other} hung: {took:.1f} s")

    # Both hang: the plan fails, naming both, and says there is nothing to restore.
    with hung(site, "backup_even"), hung(site, "backup_odd"):
        done = drp_cli(prefect_server.api_url, "plan", "activate", "-c", str(inventory),
                       timeout=HANG - 30)  # fmt: skip
    output = " ".join(_lines(done).split())
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    for name in ("backup-even", "backup-odd"):
        assert f"{name} could not be read: did not answer within {TIMEOUT} s" in output, output
