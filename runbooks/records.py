"""Where an operation's record lives: on the DRP host, where every worker sees it.

An operation's report is what a resume goes on from: the backups its first run chose (and when),
the order given for its plan, its timeline, the DNS values it replaced. A reports directory is
local to the process that writes it: a Retry picked up by another worker, in another working
directory or on another machine, would not see it, would choose the backups again and ask for
the order again. So the record lives on the DRP host, the host that survives the disaster and
already holds the site lock:

    ~/.drp/operations/<operation>/report.json      (the SSH user's home, outside what it serves)

written whole or not at all (a temporary file, then a rename), readable by that user only, at
every save (from a writer thread, so that steps never wait for it), through one SSH connection
kept for the operation. The reports directory keeps a
copy for the operator (`drp report` shows the record, and says when it shows the copy).

Reading prefers the DRP host's record. This machine's copy is used when the DRP host cannot be
reached (the log says so: it may miss what another worker recorded since), when the DRP host
has none (an operation recorded before records lived there), or when it is a later save of the
same record (`Report.revision`). A record read from the DRP host refreshes the local copy. A
run that could not read the DRP host's record never overwrites a record there that it did not
start from.

The record holds no secret, as no report does: names, counts, addresses, the order and its
signature (an HMAC), never a password or the signing key.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.commands import CommandRunner
from runbooks import connect
from runbooks.common_steps import OPERATIONS_DIR, operation_dir
from runbooks.errors import DrpError, ProviderError
from runbooks.inventory import Site
from runbooks.report import Report, report_path, save_report

RECORD_FILE = "report.json"
MISSING_EXIT = 3  # what `read_argv` exits with when there is no record


def record_path(operation_id: str) -> str:
    """The record's path on the DRP host, relative to the SSH user's home."""
    return f"{operation_dir(operation_id)}/{RECORD_FILE}"


def read_argv(path: str) -> list[str]:
    return ["sh", "-c", f'[ -e "$1" ] || exit {MISSING_EXIT}; exec cat -- "$1"', "sh", path]


def write_argv(path: str) -> list[str]:
    """Standard input to `path`, whole or not at all, readable by the SSH user only. Each
    writer has its own temporary file: two writers never mix their records."""
    script = (
        'mkdir -p -- "$(dirname -- "$1")" || exit 1; umask 077; t="$1.tmp.$$"\n'
        'if cat > "$t" && mv -f -- "$t" "$1"; then exit 0; fi; rm -f -- "$t"; exit 1'
    )
    return ["sh", "-c", script, "sh", path]


@dataclass
class Found:
    """An operation's record as found: the report (None: no record anywhere), where it was
    read, and what the operator should know about that choice (empty when nothing)."""

    report: Report | None
    source: str = ""
    note: str = ""


class OperationRecords:
    """An operation's record on the DRP host, with a copy in the local reports directory.

    `host` gives the DRP host's runner; by default one SSH connection, opened at first use and
    kept until `close()`."""

    def __init__(
        self,
        site: Site,
        directory: Path,
        *,
        host: Callable[[], CommandRunner] | None = None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.site = site
        self.directory = directory
        self.log = log or logging.getLogger("drp.records")
        self._host = host or self._drp_host
        self._pool: connect.HostPool | None = None
        self._unread: dict[str, str] = {}  # operation -> why its DRP host record was not read
        self._failing = ""  # the last failure to write on the DRP host (said once)
        # The writer thread's work: operation -> (record started, text, local copy).
        self._pending: dict[str, tuple[datetime, str, Path]] = {}
        self._changed = threading.Condition()
        self._writer: threading.Thread | None = None
        self._busy = False
        self._closing = False

    # -- the DRP host ------------------------------------------------------------------------
    def _drp_host(self) -> CommandRunner:
        if self._pool is None:
            self._pool = connect.HostPool(self.site)
        return self._pool["drp"]

    def close(self) -> None:
        """Wait for the last save to reach the DRP host, then close the connection."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        writer = self._writer
        if writer is not None:
            writer.join(120)
        self._closing = False
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> OperationRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def written_on_host(self) -> bool:
        """False when the last save could not be written on the DRP host (after `flush()`)."""
        return not self._failing

    def where(self, operation_id: str) -> str:
        """The record on the DRP host, as messages name it."""
        return f"{connect.host_name('drp')}:~/{record_path(operation_id)}"

    def local_path(self, operation_id: str) -> Path:
        return report_path(self.directory, operation_id)

    def _read_remote(self, operation_id: str) -> Report | None:
        """The DRP host's record; None when it has none. Raises when it cannot be read."""
        runner = self._host()
        result = runner.run(read_argv(record_path(operation_id)), check=False, timeout=60)
        if result.exit_code == MISSING_EXIT:
            return None
        if not result.ok:
            raise ProviderError(
                f"cannot read {self.where(operation_id)}: "
                f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
            )
        try:
            return Report.from_data(json.loads(result.stdout))
        except (ValueError, KeyError, TypeError) as err:
            raise ProviderError(
                f"{self.where(operation_id)} is not a drp record ({err}); look at it"
            ) from None

    def _read_local(self, operation_id: str) -> Report | None:
        path = self.local_path(operation_id)
        if not path.exists():
            return None
        try:
            return Report.from_data(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, OSError) as err:
            self.log.warning("%s is not a readable report (%s): left aside", path, err)
            return None

    # -- reading -----------------------------------------------------------------------------
    def load(self, operation_id: str) -> Found:
        """The operation's record, from the DRP host when it can be read (see the module)."""
        local = self._read_local(operation_id)
        copy = f"this machine's copy of its record ({self.local_path(operation_id)})"
        try:
            remote = self._read_remote(operation_id)
        except Exception as err:  # unreachable, refused, timed out, damaged: said, not fatal
            why = str(err) or type(err).__name__
            self._unread[operation_id] = why
            if local is None:
                return Found(
                    None,
                    "",
                    f"the DRP host's record of operation {operation_id} cannot be read "
                    f"({why}), and this machine has no copy of it",
                )
            return Found(
                local,
                copy,
                f"the DRP host's record of operation {operation_id} cannot be read ({why}): "
                f"going on from {copy}, which misses whatever another worker recorded since",
            )
        self._unread.pop(operation_id, None)
        if remote is None:
            if local is None:
                return Found(None)
            return Found(
                local,
                copy,
                f"the DRP host has no record of operation {operation_id}: going on from {copy} "
                "(written there at the next save)",
            )
        on_host = f"its record on the DRP host ({self.where(operation_id)})"
        same = local is not None and local.started == remote.started
        if local is not None and same and local.revision > remote.revision:
            return Found(
                local,
                copy,
                f"{copy} is a later save (revision {local.revision}) than the one on the DRP "
                f"host (revision {remote.revision}): going on from it",
            )
        if local is None or local.data != remote.data:
            save_report(remote, self.directory)  # the operator's copy, up to date
        return Found(remote, on_host)

    def load_or_start(self, operation_id: str, kind: str, site: str) -> tuple[Report, Found]:
        """The operation's record (a resume), or a new report; the note, if any, is logged."""
        found = self.load(operation_id)
        if found.note:
            self.log.warning("%s", found.note)
        report = found.report
        if report is None:
            return Report(operation_id, kind, site, started=datetime.now(UTC)), found
        if report.kind != kind:
            raise DrpError(
                f"operation {operation_id} is a {report.kind}, not a {kind}: use another "
                "operation id (or none, to get a new one)"
            )
        return report, found

    # -- writing -----------------------------------------------------------------------------
    def save(self, report: Report) -> Path:
        """A new revision of the record: this machine's copy now, the DRP host's from a
        writer thread (one SSH command each, about 60 ms on the lab; when saves come faster,
        only the latest revision is sent), so that no step waits for it. `flush()` and
        `close()` wait until the DRP host has the last one. A failure to write there is said
        (once per cause) and does not stop the operation: the next save tries again."""
        report.revision += 1
        path = save_report(report, self.directory)
        text = json.dumps(report.data, indent=2) + "\n"
        with self._changed:
            self._pending[report.operation_id] = (report.started, text, path)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_pending, name="drp-record-writer", daemon=True
                )
                self._writer.start()
            self._changed.notify_all()
        return path

    def flush(self, timeout: float = 120) -> bool:
        """Wait until every save is written on the DRP host (or failed); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _write_pending(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending:
                    self._writer = None
                    return
                operation_id, (started, text, path) = self._pending.popitem()
                self._busy = True
            try:
                self._save_remote(operation_id, started, text)
                self._failing = ""
            except Exception as err:
                why = str(err) or type(err).__name__
                if why != self._failing:
                    self.log.warning(
                        "the record of operation %s was not written on the DRP host (%s): %s "
                        "has it; a resume on another worker sees the record as last written "
                        "there",
                        operation_id,
                        why,
                        path,
                    )
                self._failing = why
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _save_remote(self, operation_id: str, started: datetime, text: str) -> None:
        if operation_id in self._unread:  # never overwrite a record this run did not start from
            there = self._read_remote(operation_id)
            if there is not None and there.started != started:
                raise DrpError(
                    f"{self.where(operation_id)} holds a record of this operation that this run "
                    f"could not read when it started ({self._unread[operation_id]}); it is "
                    "left as it is. Stop this run and run the operation again"
                )
            self._unread.pop(operation_id, None)
        result = self._host().run(
            write_argv(record_path(operation_id)), stdin=text, check=False, timeout=60
        )
        if not result.ok:
            raise ProviderError(
                f"cannot write {self.where(operation_id)}: "
                f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
            )


def records_argv(kind: str) -> list[str]:
    """Every record of an operation of `kind` on the host, each followed by a NUL byte."""
    script = (
        f'for f in {OPERATIONS_DIR}/*/{RECORD_FILE}; do [ -f "$f" ] || continue; '
        'grep -q -F -- "\\"kind\\": \\"$1\\"" "$f" && { cat -- "$f"; printf "\\000"; }; '
        "done; true"
    )
    return ["sh", "-c", script, "sh", kind]


def records_on_host(runner: CommandRunner, kind: str) -> list[Report]:
    """The records of every operation of `kind` on the DRP host (one command); a record that
    cannot be read is left out."""
    result = runner.run(records_argv(kind), check=False, timeout=60)
    if not result.ok:
        raise ProviderError(
            f"cannot list the operations' records on {runner.name}: "
            f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
        )
    found = []
    for text in result.stdout.split("\0"):
        if not text.strip():
            continue
        try:
            report = Report.from_data(json.loads(text))
        except (ValueError, KeyError, TypeError):
            continue
        if report.kind == kind:
            found.append(report)
    return found


def resume_sentence(report: Report, source: str) -> str:
    """What a resumed operation goes on from, in one sentence for the log."""
    order = report.order
    if order and order.get("decision") == "activate":
        given = (
            f"order of {order.get('ordered_by')} (reference {order.get('reference')}, "
            f"{order.get('answered_at')}, via {order.get('via', 'unknown')})"
        )
    elif order:
        given = f"order {order.get('decision')} by {order.get('ordered_by')}"
    else:
        given = "no order yet"
    sets = sorted({f"{b.get('server')}:{b.get('set_id')}" for b in report.backups})
    chosen = (
        f"backups {', '.join(sets)} (chosen {report.chosen_at:%Y-%m-%d %H:%M:%S} UTC)"
        if sets and report.chosen_at
        else "backups not chosen yet"
    )
    done = sum(1 for r in report.timeline if not r.step.startswith("preflight-"))
    last = f", last run {report.outcome}" if report.outcome != "running" else ""
    return (
        f"resuming operation {report.operation_id} from {source}: {given}, "
        f"{chosen}, {done} step(s) recorded after the order{last}"
    )
