"""MariaDB on a lab host: a throwaway server run by the host's user on the host's address.

`mariadb-install-db --auth-root-authentication-method=normal` also creates a password-less
`root@127.0.0.1` (and `root@::1`); over TCP from 127.0.0.1 such an entry would win over ours, so
we drop them and keep only `root@localhost` on the socket, whose directory only the host's user
and root can enter. The lab's admin login is `topology.DB_USER` from 127.0.0.0/8 with the lab
password. `--no-defaults` keeps the system's my.cnf out of the lab.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pymysql

from lab import topology
from lab.accounts import ids, make_owned_dir
from lab.commands import as_user, run
from lab.daemons import Daemon

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
PASSWORD_NAME = "DRP_LAB_MYSQL_PASSWORD"
LOOPBACK_NET = "127.0.0.0/255.0.0.0"  # MariaDB's spelling of 127.0.0.0/8 in account hosts


def data_dir(paths: topology.LabPaths, name: str) -> Path:
    return paths.data(name) / "mariadb"


def socket_dir(paths: topology.LabPaths, name: str) -> Path:
    return paths.data(name) / "mariadb-socket"


def socket_path(paths: topology.LabPaths, name: str) -> Path:
    return socket_dir(paths, name) / "mysqld.sock"


def sql_string(value: str) -> str:
    """A SQL string literal (the lab's passwords are alphanumeric; quote anyway)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def admin_sql(password: str) -> str:
    user = f"'{topology.DB_USER}'@'{LOOPBACK_NET}'"
    # Bootstrap runs without grant tables; FLUSH PRIVILEGES loads them so accounts can be made.
    return (
        "FLUSH PRIVILEGES;\n"
        "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', ''@'localhost';\n"
        f"CREATE USER {user} IDENTIFIED BY {sql_string(password)};\n"
        f"GRANT ALL PRIVILEGES ON *.* TO {user} WITH GRANT OPTION;\n"
    )


def install_db_argv(datadir: Path, extra_sql: Path) -> list[str]:
    return [
        INSTALL_DB,
        "--no-defaults",
        f"--datadir={datadir}",
        "--auth-root-authentication-method=normal",
        "--skip-name-resolve",
        "--skip-test-db",
        f"--extra-file={extra_sql}",
    ]


def mariadbd_argv(datadir: Path, address: str, sockets: Path) -> list[str]:
    return [
        MARIADBD,
        "--no-defaults",  # must come first
        f"--datadir={datadir}",
        f"--socket={sockets / 'mysqld.sock'}",
        f"--pid-file={sockets / 'mariadbd.pid'}",
        f"--bind-address={address}",
        f"--port={topology.MYSQL_PORT}",
        "--skip-name-resolve",
        "--local-infile=1",  # the seed loads rows with LOAD DATA LOCAL INFILE
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--innodb-buffer-pool-size=128M",
        "--innodb-flush-log-at-trx-commit=2",
    ]


def initialized_marker(paths: topology.LabPaths, name: str) -> Path:
    """Written once mariadb-install-db has succeeded (a failed run leaves tables behind)."""
    return paths.data(name) / "mariadb.initialized"


def is_initialized(paths: topology.LabPaths, name: str) -> bool:
    return initialized_marker(paths, name).exists()


def init_server(paths: topology.LabPaths, host: topology.LabHost, password: str) -> bool:
    """mariadb-install-db as the host's user, admin login included; True when one was made."""
    if is_initialized(paths, host.name):
        return False
    base = make_owned_dir(paths.data(host.name), host.user, 0o755)
    datadir = data_dir(paths, host.name)
    if datadir.exists():  # a half-made server from an interrupted run
        shutil.rmtree(datadir)
    make_owned_dir(datadir, host.user, 0o750)
    extra = base / ".mariadb-admin.sql"
    fd = os.open(extra, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(admin_sql(password))
    os.chown(extra, *ids(host.user))
    try:
        run(
            as_user(host.user, install_db_argv(datadir, extra)),
            what=f"install MariaDB for {host.name}",
        )
    finally:
        extra.unlink(missing_ok=True)
    initialized_marker(paths, host.name).write_text("mariadb-install-db done\n")
    return True


def sends_handshake(address: str, port: int, timeout: float = 0.5) -> bool:
    """True once the server greets a client with protocol-10 handshake (it accepts logins)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            packet = sock.recv(5)
    except OSError:
        return False
    return len(packet) == 5 and packet[4] == 10


def connect(
    host: topology.LabHost, secrets: dict[str, str], database: str | None = None, **kwargs: object
) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=host.address,
        port=topology.MYSQL_PORT,
        user=topology.DB_USER,
        password=secrets[PASSWORD_NAME],
        database=database,
        connect_timeout=5,
        autocommit=True,
        charset="utf8mb4",
        **kwargs,  # type: ignore[arg-type]
    )


def mariadb_daemon(paths: topology.LabPaths, host: topology.LabHost) -> Daemon:
    sockets = make_owned_dir(socket_dir(paths, host.name), host.user, 0o750)
    return Daemon(
        name=f"mariadb-{host.name}",
        host=host.name,
        argv=mariadbd_argv(data_dir(paths, host.name), host.address, sockets),
        address=host.address,
        port=topology.MYSQL_PORT,
        ready=lambda: sends_handshake(host.address, topology.MYSQL_PORT),
        run_as=host.user,
        cwd=paths.data(host.name),
    )


def ensure_database(host: topology.LabHost, secrets: dict[str, str], name: str) -> None:
    with connect(host, secrets) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
