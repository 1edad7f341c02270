"""The lab's mail sink: an SMTP server on 127.0.10.25:2525 that keeps every message it receives
in a Maildir, `<lab>/data/mail`. config/lab.yaml sends its tickets there besides the ticket
file, and order codes go to the customer's contacts through it: tests, and people trying the
lab, read them there (`messages()`, or any Maildir reader)."""

from __future__ import annotations

import mailbox
import socket
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from lab import topology
from lab.daemons import Daemon

NAME = "mail-sink"


def maildir(paths: topology.LabPaths) -> Path:
    return paths.data("mail")


def answers_smtp(timeout: float = 1.0) -> bool:
    """True once the server greets (an SMTP 220 banner)."""
    try:
        with socket.create_connection((topology.SMTP_ADDRESS, topology.SMTP_PORT), timeout) as c:
            return c.recv(64).startswith(b"220")
    except OSError:
        return False


def mail_daemon(paths: topology.LabPaths) -> Daemon:
    directory = maildir(paths)
    directory.parent.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(directory, create=True)  # the handler expects the Maildir to exist
    return Daemon(
        name=NAME,
        host="mail",
        argv=[
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"{topology.SMTP_ADDRESS}:{topology.SMTP_PORT}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(directory),
        ],
        address=topology.SMTP_ADDRESS,
        port=topology.SMTP_PORT,
        ready=answers_smtp,
    )


def messages(paths: topology.LabPaths | None = None) -> list[EmailMessage]:
    """Every message the sink kept, oldest first."""
    directory = maildir(paths or topology.paths())
    files = [f for part in ("new", "cur") for f in (directory / part).glob("*") if f.is_file()]
    found = []
    for file in sorted(files, key=lambda f: (f.stat().st_mtime, f.name)):
        message = BytesParser(policy=policy.default).parsebytes(file.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found
