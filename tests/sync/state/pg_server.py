"""A real PostgreSQL server for the tests (never a mock, never SQLite pretending).

`PostgresServer.start()` runs Debian's `initdb` and `pg_ctl` (package `postgresql`, in
/usr/lib/postgresql/<version>/bin) on a fresh directory in memory (/dev/shm, else the
system's temporary directory), listening on a free port of 127.0.0.1 only; `stop()` stops
it and removes the directory (and when the test process is killed first, a watchdog process
does). initdb refuses to run as root: as root the server runs as the `postgres` system user
the Debian package creates (through `runuser`). Durability is off (fsync,
synchronous_commit, full_page_writes): a test database is thrown away, and a crash of the
machine is not what these tests are about.

Each test gets a database of its own, copied from a template that holds the migrated schema
(`CREATE DATABASE ... TEMPLATE`, ~0.1 s), and dropped after it."""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

#: the superuser initdb makes; the server trusts connections from 127.0.0.1 only
SUPERUSER = "calsync"
#: who runs the server when the tests run as root (the Debian package's system user)
SYSTEM_USER = "postgres"


def find_bindir() -> Path | None:
    """The newest installed server's bin directory (initdb, pg_ctl, postgres), if any."""
    installed = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (path.parent / "pg_ctl").exists()
    ]
    if installed:
        return max(installed, key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)])
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").exists():
        return Path(found).resolve().parent
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = 0
        self.directory: Path | None = None
        #: a database holding the migrated schema, for the tests' copies (conftest.py)
        self.template: str | None = None
        self._names = itertools.count(1)
        self._as: list[str] = []

    @property
    def data(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    def start(self) -> None:
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, and there is no {SYSTEM_USER!r} user to run PostgreSQL"
                    " as (initdb refuses root): apt-get install postgresql makes it"
                ) from None
            self._as = ["runuser", "-u", SYSTEM_USER, "--"]
        self.directory = Path(tempfile.mkdtemp(prefix="calsync-pg-", dir=_scratch()))
        if self._as:
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._watch()
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        )
        self.port = free_port()
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.directory}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )

    def _watch(self) -> None:
        """A process of its own that stops the server and removes its directory once this
        process is gone without `stop()` (killed, or a timeout's SIGTERM skips fixtures'
        teardown): no server is left running behind a test run."""
        assert self.directory is not None
        stop = " ".join(
            shlex.quote(a)
            for a in [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                      "-m", "immediate", "stop"]
        )
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done;"
            f" if [ -d {shlex.quote(str(self.directory))} ]; then {stop} || true;"
            f" rm -rf {shlex.quote(str(self.directory))}; fi"
        )
        subprocess.Popen(
            ["/bin/sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.directory is None:
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`); its name."""
        name = f"t{next(self._names)}"
        with self.admin() as conn:
            if template is None:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            else:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def files_of(self, database: str) -> list[Path]:
        """Every file that holds the database's rows: its own directory, and the write-ahead
        log (after a checkpoint, so the pages are on disk too)."""
        with self.admin() as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
        assert row is not None
        own = sorted((self.data / "base" / str(row[0])).iterdir())
        wal = sorted(p for p in (self.data / "pg_wal").iterdir() if p.is_file())
        return own + wal

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as, str(self.bindir / program), *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = ""
            if self.directory is not None and (self.directory / "server.log").exists():
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}"
            )


def _scratch() -> str | None:
    """Memory (/dev/shm) when the machine has it: a DDL statement creates and removes files,
    which on this machine's disk made each test's database cost ~0.3 s, in memory ~0.1 s."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
