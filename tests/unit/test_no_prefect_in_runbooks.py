"""The engine and every runbook work without Prefect: importing all of `runbooks` loads none of it.

A fresh interpreter, so that nothing another test imported counts.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import importlib, pkgutil, sys
import runbooks
for module in pkgutil.walk_packages(runbooks.__path__, "runbooks."):
    importlib.import_module(module.name)  # packages' modules too (runbooks.watch.*)
print(sorted({name.split(".")[0] for name in sys.modules if name.split(".")[0] == "prefect"}))
"""


def test_importing_every_runbook_module_loads_no_prefect() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
