"""Helpers for the backup unit tests: a runner that runs argv on this machine, and sets on disk.

The catalogue reads backup servers through a `CommandRunner`; running the very same argv with
subprocess in a temporary directory tests the shell commands for real without an SSH server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from providers.commands import CommandResult
from runbooks.manifest import (
    DumpRecord,
    Manifest,
    SetKind,
    TreeRecord,
    TreeSection,
    make_set_id,
)


class LocalRunner:
    """Runs argv here, in `cwd` (a backup server's "home")."""

    def __init__(self, name: str, cwd: Path) -> None:
        self.name = name
        self.cwd = cwd
        self.commands: list[tuple[str, ...]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        secret_env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        started = time.monotonic()
        env = {**os.environ, **(secret_env or {})}
        done = subprocess.run(
            list(argv),
            cwd=self.cwd,
            input=stdin or "",
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        self.commands.append(tuple(argv))
        result = CommandResult(
            tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started
        )
        if check and not result.ok:
            raise RuntimeError(f"{argv} failed: {done.stderr}")
        return result


def tree_digest(root: Path) -> tuple[str, int, int]:
    """What `tree_stats_argv` computes, in Python: (digest, files, bytes)."""
    lines = []
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            total += st.st_size
            lines.append(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{int(st.st_mtime)}\n")
    listing = "".join(sorted(lines, key=lambda line: line.encode()))
    return hashlib.sha256(listing.encode()).hexdigest(), len(lines), total


def make_set(
    home: Path,
    *,
    area: str = "backups",
    environment: str = "app",
    started: datetime,
    kind: SetKind = SetKind.DAILY,
    server: str = "backup-even",
    files: dict[str, bytes] | None = None,
    dumps: dict[str, bytes] | None = None,
    user_databases: tuple[str, ...] = ("app_users",),
    write_manifest: bool = True,
) -> tuple[Path, Manifest]:
    """A set on disk as the backup writes it (tree files/www, dumps), with its manifest."""
    set_id = make_set_id(started, kind)
    root = home / area / environment / set_id
    trees: list[TreeRecord] = []
    if kind.has_trees:
        www = root / "files" / "www"
        www.mkdir(parents=True)
        for rel, content in (files or {"index.html": b"<h1>app</h1>\n"}).items():
            (www / rel).parent.mkdir(parents=True, exist_ok=True)
            (www / rel).write_bytes(content)
        digest, count, size = tree_digest(www)
        trees.append(
            TreeRecord(
                section=TreeSection.FILES,
                name="www",
                source="srv/app/www",
                path="files/www",
                files=count,
                bytes=size,
                digest=digest,
                copied_at=started,
            )
        )
    records: list[DumpRecord] = []
    default_dumps = {"app_users": b"users dump", "app_shop": b"shop dump"}
    if kind is SetKind.USER_DATABASES:
        default_dumps = {"app_users": b"users dump"}
    for name, content in (dumps if dumps is not None else default_dumps).items():
        engine = "postgresql" if name == "app_users" else "mysql"
        rel = f"databases/{name}.{'dump' if engine == 'postgresql' else 'sql'}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
        records.append(
            DumpRecord(
                database=name,
                engine=engine,
                user_database=name in user_databases,
                path=rel,
                format="pg_dump -Fc" if engine == "postgresql" else "mysqldump",
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                dumped_at=started + timedelta(seconds=1),
                tables={"public.users": 3},
            )
        )
    root.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        set_id=set_id,
        kind=kind,
        environment=environment,
        source_host="production",
        backup_host=server,
        started=started,
        completed=started + timedelta(seconds=5),
        trees=trees,
        databases=records,
    )
    if write_manifest:
        (root / "manifest.json").write_text(manifest.to_json())
    return root, manifest
