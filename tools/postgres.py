"""A throw-away PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` package,
run from a temporary directory, reachable only on loopback.

:class:`Postgres` runs ``initdb`` into a fresh directory under the system temp dir, writes a
``pg_hba.conf`` that trusts loopback and the private Unix socket only, and starts the server
with ``pg_ctl -w`` on a free 127.0.0.1 port.  PostgreSQL refuses to run as root
(src/backend/main/main.c, "root execution of the PostgreSQL server is not permitted"), so when
we are root every server command runs as the ``postgres`` system user the Debian package
creates, through ``runuser``, and the directory is chowned to it.  The directory lives under
``/tmp`` rather than pytest's ``tmp_path`` because pytest makes its base directory 0700 for
its own user, which ``postgres`` could not enter.  :meth:`Postgres.stop` always runs
``pg_ctl stop -m fast`` and removes the directory.

:meth:`Postgres.create_database` returns a ``postgresql://`` URL for a new, empty database,
so each test gets its own.  Run ``python -m tools.postgres`` to keep one running until Ctrl-C.

Errors::

    PostgresError     initdb or pg_ctl failed, or no postgres user (message has the log tail)
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Optional

# Debian 12's postgresql-15; the binaries are not on PATH there (only the pg_wrapper scripts).
PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
PG_SYSTEM_USER = "postgres"  # created by the Debian package; also our superuser's role name
LOOPBACK = "127.0.0.1"
INITDB_TIMEOUT_S = 120.0
# pg_ctl -w waits this long for the server to accept connections.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30.0
# Picking a free port races with other processes (swtpm, Keylime); retry a few times.
START_ATTEMPTS = 5
LOG_TAIL_CHARS = 2000
# Test data need not survive a power cut: skipping fsync makes CREATE DATABASE and commits
# cheap.  Benchmarks that measure commit cost pass durable=True.
NON_DURABLE_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
# Only the private socket directory and loopback TCP, both without a password: the server
# holds throw-away data and listens on 127.0.0.1 only.
PG_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


class PostgresError(RuntimeError):
    """initdb or pg_ctl failed; the message carries the tail of its output."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str) -> str:
    return text[-LOG_TAIL_CHARS:]


class Postgres:
    """One PostgreSQL server in a temporary directory; a context manager."""

    def __init__(self, *, durable: bool = False, bin_dir: Path = PG_BIN_DIR) -> None:
        self._durable = durable
        self._bin_dir = bin_dir
        self.root: Optional[Path] = None
        self.port = 0
        self.startup_seconds = 0.0  # initdb + pg_ctl start, for reports

    @property
    def data_dir(self) -> Path:
        if self.root is None:
            raise PostgresError("server not started")
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_SYSTEM_USER}@{LOOPBACK}:{self.port}/{database}"

    def start(self) -> Postgres:
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="limelet-postgres-"))
        try:
            self._own(self.root)
            self._run("initdb", "-D", str(self.data_dir), "-U", PG_SYSTEM_USER,
                      "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
                      timeout=INITDB_TIMEOUT_S)  # fmt: skip
            hba = self.data_dir / "pg_hba.conf"
            hba.write_text(PG_HBA, encoding="utf-8")
            self._own(hba)
            self._start_on_free_port()
        except BaseException:
            self._remove()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_on_free_port(self) -> None:
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                return
            except PostgresError:
                if attempt == START_ATTEMPTS - 1:
                    raise

    def _pg_ctl_start(self) -> None:
        root = self.data_dir.parent
        settings = [f"listen_addresses={LOOPBACK}", f"port={self.port}",
                    f"unix_socket_directories={root}"]  # fmt: skip
        if not self._durable:
            settings.extend(NON_DURABLE_SETTINGS)
        options = " ".join(f"-c {s}" for s in settings)
        log = root / "server.log"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w",
                  "-t", str(START_TIMEOUT_S), "-o", options, "start",
                  timeout=START_TIMEOUT_S + 5, log=log)  # fmt: skip

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop",
                          timeout=STOP_TIMEOUT_S)  # fmt: skip
        finally:
            self._remove()

    def create_database(self, name: Optional[str] = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg  # the optional 'postgres' extra; only callers that use it need it
        from psycopg import sql

        name = name or f"limelet_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            # WITH (FORCE) (PostgreSQL 13+) ends sessions a test left open.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip

    def _as_server_user(self) -> list[str]:
        return ["runuser", "-u", PG_SYSTEM_USER, "--"] if os.geteuid() == 0 else []

    def _own(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise PostgresError(
                f"no '{PG_SYSTEM_USER}' user: install Debian's postgresql package"
            ) from None
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str, timeout: float, log: Optional[Path] = None) -> None:
        command = [*self._as_server_user(), str(self._bin_dir / tool), *args]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresError(f"{tool} did not run: {exc}") from exc
        if done.returncode != 0:
            server_log = log.read_text(errors="replace") if log and log.exists() else ""
            raise PostgresError(
                f"{tool} exited {done.returncode}: {_tail(done.stdout + done.stderr + server_log)}"
            )

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def main() -> None:
    with Postgres() as server:
        print(f"PostgreSQL up in {server.startup_seconds:.2f} s: {server.url()}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)


if __name__ == "__main__":
    main()
