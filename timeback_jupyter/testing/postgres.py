"""A real, throwaway PostgreSQL for tests: the machine's own server binaries (Debian's
``postgresql`` package), a cluster made in a temporary directory, listening on 127.0.0.1 only.

``initdb`` and ``postgres`` refuse to run as root, so under root they run as the ``postgres``
user (``runuser``) in a directory that user owns. Durability is as in production (``fsync``
on): a test of what survives a crash means nothing on a server that may lose commits.

The relay connects as ``relay``, a role that is not a superuser and owns each test database (so
the migrations prove they need no more than a database owner has). Each test gets a database of
its own (:meth:`PostgresServer.create_database`).

Where PostgreSQL is not installed, :func:`postgres_server` skips with the reason; with
``TIMEBACK_REQUIRE_POSTGRES=1`` (CI installs it) that is a failure instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RELAY_ROLE = "relay"
PG_USER = "postgres"  # the OS user the server runs as under root (Debian's package makes it)
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot run here; the message says why."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl``: ``$TIMEBACK_PG_BINDIR``, else the newest
    ``/usr/lib/postgresql/<major>/bin`` (Debian puts them there, not on PATH), else PATH's."""
    named = os.environ.get("TIMEBACK_PG_BINDIR")
    if named:
        return Path(named) if (Path(named) / "pg_ctl").exists() else None
    found = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        if p.parent.parent.name.isdigit()
    ]
    if found:
        return max(found, key=lambda p: int(p.parent.name))
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One cluster: ``start()``, ``create_database(name)`` -> URL, ``restart()`` (or
    ``halt()`` then ``resume()``) for drills, ``stop()``. ``settings``: server settings beyond
    the defaults (e.g. ``{"shared_buffers": "1GB"}``, as a deployment would tune them)."""

    host = "127.0.0.1"

    def __init__(self, bindir: Path, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        self.settings = dict(settings or {})
        for name, value in self.settings.items():
            if not name.replace("_", "").replace(".", "").isalnum() or any(
                c.isspace() or c in "'\"" for c in str(value)
            ):
                raise ValueError(f"not a PostgreSQL setting: {name}={value!r}")
        self.root = Path(tempfile.mkdtemp(prefix="timeback-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.admin_password = secrets.token_urlsafe(16)
        self.relay_password = secrets.token_urlsafe(16)
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(PG_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, and there is no {PG_USER!r} user to run PostgreSQL as "
                    "(it refuses root); Debian's postgresql package creates it"
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", PG_USER, "--"]
        self.root.chmod(0o700)
        self.started_in: float | None = None  # seconds initdb + start took

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [*self._as, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
            )

    def start(self) -> PostgresServer:
        began = time.monotonic()
        pwfile = self.root / "pw"
        pwfile.write_text(self.admin_password + "\n")
        if self._as:
            shutil.chown(pwfile, PG_USER)
        try:
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-instructions",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        for attempt in range(3):  # a free port can be taken between our look and its bind
            self.port = free_port()
            try:
                self._start_server()
                break
            except PostgresUnavailable:
                if attempt == 2:
                    raise
        self.started_in = time.monotonic() - began
        with self.admin() as conn:
            conn.execute(
                f"CREATE ROLE {RELAY_ROLE} LOGIN PASSWORD '{self.relay_password}'"  # type: ignore[arg-type]
            )
        return self

    def _start_server(self) -> None:
        options = (
            f"-c listen_addresses={self.host} -c port={self.port} -c fsync=on "
            f"-c synchronous_commit=on -c unix_socket_directories={self.root} "
            "-c max_connections=200"
        ) + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data and port (``fast``: sessions cut, a clean
        shutdown; ``immediate``: as a crash, recovered from the WAL at the next start)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"pg_ctl stop modes are smart, fast, immediate; not {mode!r}")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", "60", "stop")  # fmt: skip

    def resume(self) -> None:
        """Start a halted server again, on the same port with the same settings."""
        self._start_server()

    def restart(self, mode: str = "fast", *, down_for: float = 0.0) -> None:
        """pg_ctl stop -m ``mode``, ``down_for`` seconds with no server, start again."""
        self.halt(mode)
        time.sleep(down_for)
        self.resume()

    def stop(self) -> None:
        if self.data.exists() and self.port:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop", timeout=60)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, database: str = "postgres"):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=PG_USER,
            password=self.admin_password,
            dbname=database,
            autocommit=True,
        )

    def url(self, database: str, *, user: str = RELAY_ROLE) -> str:
        """A SQLAlchemy URL (driver psycopg 3) for ``database`` as ``user``."""
        password = self.relay_password if user == RELAY_ROLE else self.admin_password
        return f"postgresql+psycopg://{user}:{password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database owned by the relay's role, empty or a copy of ``template`` (a
        database no one is connected to); its URL."""
        for given in (name, template or "template1"):
            if not _NAME.fullmatch(given):
                raise ValueError(f"{given!r}: a database name here is [a-z_][a-z0-9_]*")
        with self.admin() as conn:
            conn.execute(
                f"CREATE DATABASE {name} OWNER {RELAY_ROLE} TEMPLATE {template or 'template1'}"  # type: ignore[arg-type]
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r}: a database name here is [a-z_][a-z0-9_]*")
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unavailable(reason: str) -> None:
    """Skip (fail where PostgreSQL is required) with ``reason``."""
    if os.environ.get("TIMEBACK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"TIMEBACK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_bindir() -> Path:
    """PostgreSQL's binaries, or the test skipped (failed, if required) saying why."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL is not installed here (no pg_ctl in /usr/lib/postgresql/*/bin, "
            "$TIMEBACK_PG_BINDIR or PATH): apt-get install postgresql"
        )
    assert bindir is not None
    return bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session (initdb + start: 1.5 s on a quiet machine, 6 s on a busy
    one), stopped and removed after."""
    with PostgresServer(require_bindir()) as server:
        yield server
