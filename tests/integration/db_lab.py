"""What the database integration tests share: SSH to the lab's hosts, endpoints, copies, and a
runner that keeps every command it ran (to prove no password ever reached an argv)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import psycopg
import pymysql
from psycopg import sql

from lab import topology
from providers import rsync
from providers.commands import CommandResult
from providers.database import engine_for
from providers.dbcommon import DbEndpoint
from providers.ssh import SshHost, SshTarget

# The lab's hosts authorize each other's keys: drp pulls from production with its own key.
RECEIVER_KEY = "~/.ssh/id_ed25519"


class Lab(Protocol):
    """The part of the `lab` fixture's handle these tests use."""

    paths: topology.LabPaths
    secrets: dict[str, str]


def ssh_host(lab: Lab, name: str) -> SshHost:
    paths = lab.paths
    lab_host = topology.host(name)
    target = SshTarget(
        name=name,
        address=lab_host.address,
        port=topology.SSH_PORT,
        user=lab_host.user,
        key_path=paths.operator_key,
        known_hosts=paths.known_hosts,
    )
    return SshHost(target)


def endpoint(host_name: str, port: int, dbname: str) -> DbEndpoint:
    return DbEndpoint(host_name, topology.host(host_name).address, port, topology.DB_USER, dbname)


def new_tag() -> str:
    """A short random suffix for this run's scratch directory and databases."""
    return secrets.token_hex(3)


def copy_dir_from_production(receiver: SshHost, directory: str) -> rsync.CopyResult:
    """rsync, run on the receiver, pulls `directory` (relative to the homes) from production."""
    production = topology.host("production")
    source = rsync.RemoteEndpoint(
        name="production",
        address=production.address,
        port=topology.SSH_PORT,
        user=production.user,
        path=directory,
        key_path=RECEIVER_KEY,
    )
    return rsync.copy_tree(receiver, source, directory)


class RecordingRunner:
    """An SshHost that keeps the CommandResult of everything it ran."""

    def __init__(self, host: SshHost) -> None:
        self.host = host
        self.name = host.name
        self.results: list[CommandResult] = []

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
        result = self.host.run(
            argv,
            secret_env=secret_env,
            stdin=stdin,
            timeout=timeout,
            check=check,
            on_output=on_output,
        )
        self.results.append(result)
        return result


# -- one engine on the lab, for the suite run over every engine --------------------------------


class DbLab:
    """One database engine on the lab: the engine under test, its server's port and password,
    production's database, and the few admin statements tests need to prepare scratch
    databases (with the server's own driver, never through the code under test)."""

    name: str
    port: int
    production_db: str
    dump_name: str  # the dump's file name: its extension tells the format
    dump_format: str
    tables: frozenset[str]  # production's tables, as table_counts names them
    password_env: str
    a_change: str  # a statement changing a restored copy of production's database
    secret: str  # the lab secret holding the password

    def __init__(self, lab: Lab) -> None:
        self.engine = engine_for(self.name)
        self.password = lab.secrets[self.secret]

    def endpoint(self, host_name: str, dbname: str) -> DbEndpoint:
        return endpoint(host_name, self.port, dbname)

    @property
    def production(self) -> DbEndpoint:
        return self.endpoint("production", self.production_db)

    def table(self, name: str) -> str:
        """A table of the default schema, as table_counts names it."""
        raise NotImplementedError

    def execute(self, target: DbEndpoint, *statements: str) -> None:
        raise NotImplementedError

    def create_database(self, target: DbEndpoint, *, prepared: bool = False) -> None:
        """An empty database; `prepared`: with a setting a DBA gave it (which a restore in
        place must keep), read back by `is_prepared`."""
        raise NotImplementedError

    def is_prepared(self, target: DbEndpoint) -> bool:
        raise NotImplementedError

    def databases(self, prefix: str) -> set[str]:
        raise NotImplementedError

    def drop_databases(self, prefix: str) -> None:
        raise NotImplementedError

    def kept_counts(self, runner: SshHost, kept_as: str, scratch: DbEndpoint) -> dict[str, int]:
        """Rows per table of what a restore kept aside (`RestoreResult.kept_as`)."""
        raise NotImplementedError


class PostgresLab(DbLab):
    name = "postgresql"
    secret = "DRP_LAB_PG_PASSWORD"
    port = topology.PG_PORT
    production_db = topology.APP_PG_DB
    dump_name = "app_users.dump"
    dump_format = "pg-custom"
    tables = frozenset({"public.users", "public.sessions", "public.audit"})
    password_env = "PGPASSWORD"
    a_change = (
        "INSERT INTO public.audit (id, user_id, action, at, detail) "
        "SELECT max(id) + 1, 1, 'login', now(), 'written on drp' FROM public.audit"
    )

    def _connect(self, dbname: str) -> psycopg.Connection:
        target = self.endpoint("drp", dbname)
        return psycopg.connect(
            host=target.address,
            port=target.port,
            user=target.user,
            password=self.password,
            dbname=dbname,
            autocommit=True,
        )

    def table(self, name: str) -> str:
        return f"public.{name}"

    def execute(self, target: DbEndpoint, *statements: str) -> None:
        with self._connect(target.dbname) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # test constants

    def create_database(self, target: DbEndpoint, *, prepared: bool = False) -> None:
        name = sql.Identifier(target.dbname)
        with self._connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
            if prepared:
                conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS 'prepared by the DBA'").format(name)
                )

    def is_prepared(self, target: DbEndpoint) -> bool:
        with self._connect("postgres") as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (target.dbname,),
            ).fetchone()
        return row == ("prepared by the DBA",)

    def databases(self, prefix: str) -> set[str]:
        with self._connect("postgres") as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
            ).fetchall()
        return {row[0] for row in rows}

    def drop_databases(self, prefix: str) -> None:
        with self._connect("postgres") as conn:
            for name in self.databases(prefix):
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def kept_counts(self, runner: SshHost, kept_as: str, scratch: DbEndpoint) -> dict[str, int]:
        return self.engine.table_counts(scratch.with_dbname(kept_as), self.password)


class MysqlLab(DbLab):
    name = "mysql"
    secret = "DRP_LAB_MYSQL_PASSWORD"
    port = topology.MYSQL_PORT
    production_db = topology.APP_MYSQL_DB
    dump_name = "app_shop.sql.gz"
    dump_format = "mysql-sql+gzip"
    tables = frozenset({"products", "orders", "order_items"})
    password_env = "MYSQL_PWD"
    a_change = "DELETE FROM order_items WHERE id = 1"

    def _connect(self, dbname: str | None) -> pymysql.Connection:
        return pymysql.connect(
            host=topology.host("drp").address,
            port=self.port,
            user=topology.DB_USER,
            password=self.password,
            database=dbname,
            autocommit=True,
        )

    def _run(self, dbname: str | None, *statements: str) -> list[tuple[object, ...]]:
        with self._connect(dbname) as conn, conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return list(cursor.fetchall())

    def table(self, name: str) -> str:
        return name

    def execute(self, target: DbEndpoint, *statements: str) -> None:
        self._run(target.dbname, *statements)

    def create_database(self, target: DbEndpoint, *, prepared: bool = False) -> None:
        charset = " CHARACTER SET latin1 COLLATE latin1_swedish_ci" if prepared else ""
        self._run(None, f"CREATE DATABASE `{target.dbname}`{charset}")

    def is_prepared(self, target: DbEndpoint) -> bool:
        found = self._run(
            None,
            "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
            f"WHERE SCHEMA_NAME = '{target.dbname}'",
        )
        return found == [("latin1",)]

    def databases(self, prefix: str) -> set[str]:
        return {
            str(row[0])
            for row in self._run(None, "SHOW DATABASES")
            if str(row[0]).startswith(prefix)
        }

    def drop_databases(self, prefix: str) -> None:
        for name in self.databases(prefix):
            self._run(None, f"DROP DATABASE `{name}`")

    def kept_counts(self, runner: SshHost, kept_as: str, scratch: DbEndpoint) -> dict[str, int]:
        # The kept dump gives the data back: load it into a scratch database.
        self.engine.restore(
            runner,
            kept_as,
            scratch,
            self.password,
            backup_id="kept",
            manifest_digest="m",
            operation_id="read-kept",
        )
        return self.engine.table_counts(scratch, self.password)


DB_LABS: dict[str, type[DbLab]] = {"postgresql": PostgresLab, "mysql": MysqlLab}
