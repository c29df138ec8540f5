"""The relay's store: an engine from a URL, its schema brought to head by Alembic, and one
write transaction at a time.

``sqlite:///path`` is the one-hub store: a file in WAL mode with ``synchronous=FULL`` (a commit
survives a power cut, not only a crash), a busy timeout and foreign keys on, every write
transaction opened with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite recipe: a transaction that
reads first never deadlocks upgrading its lock).

``postgresql+psycopg://user:password@host/db`` (plain ``postgresql://`` means the same: psycopg 3
is the driver the relay installs) is the store of several relay processes: the same schema and
migrations (SQLAlchemy Core throughout), pooled connections, READ COMMITTED; the rules lock the
user's row (``FOR UPDATE``), claimers skip each other's rows (``SKIP LOCKED``), and the
database itself refuses overlapping active spans (revision 0003).

A pooled connection is not pinged before use (``pool_pre_ping`` cost every request one round
trip more). A connection the server closed (a restart, ``pg_terminate_backend``, a proxy's
idle timeout) has its goodbye waiting on the socket: the checkout looks for it without a round
trip (:func:`_closed_by_server`) and reconnects. One that dies unseen fails its request as
:class:`RelayDatabaseUnavailable` (a 503); SQLAlchemy classifies that as a disconnect and drops
every connection made before it, so the next request reconnects. TCP keepalives keep a NAT's
or load balancer's idle timer from dropping pooled connections silently, and find a vanished
peer; ``tcp_user_timeout`` bounds a request sent to one.

Opening never rewrites a store it does not understand: a store made by a newer relay (a
revision these migrations do not know), or a database holding relay tables without our
version table, is refused with :class:`RelayStoreError` and left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from ..store.errors import StoreError, explain
from .schema import TABLES, VERSION_TABLE

SCRIPT_LOCATION = "timeback_jupyter.relay:migrations"
BACKENDS = ("sqlite", "postgresql")  # the dialects the rules' SQL is written for
WRITE = "timeback_relay_write"  # the execution option that makes a SQLite BEGIN IMMEDIATE
MIGRATION_LOCK = 0x7469_6D65_6261_636B  # "timeback": the advisory lock relays migrate under


class RelayStoreError(StoreError):
    """The relay's store cannot do what was asked; the message says why and where.

    A ``StoreError``: the drainer already pauses and retries on those.
    """


class RelayDatabaseUnavailable(RelayStoreError):
    """The database cannot be reached now (down, restarting, connection lost): nothing was
    stored; the same request later will do (the face answers 503 with Retry-After)."""


# SQLSTATE classes of a server going away: 08 connection exception, 57P admin shutdown /
# crash shutdown / cannot connect now (starting up).
_GONE_STATES = ("08", "57P")


def _unreachable(err: sa.exc.SQLAlchemyError) -> bool:
    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        return True
    orig = getattr(err, "orig", None)
    state = getattr(orig, "sqlstate", None) or ""
    if state.startswith(_GONE_STATES):
        return True
    # psycopg raises a bare OperationalError without a SQLSTATE when it cannot connect.
    return isinstance(err, sa.exc.OperationalError | sa.exc.InterfaceError) and not state


def alembic_config() -> Config:
    """Alembic's config, built in code: users need no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the relay's migrations have no head"
    return head


class RelayDatabase:
    """The engine and the transactions the relay's parts share."""

    def __init__(
        self, engine: sa.Engine, where: str, path: str, connect_args: dict[str, Any] | None = None
    ) -> None:
        self.engine = engine
        self.connect_args = connect_args or {}  # what each new connection is opened with
        self.where = where  # the URL without its password, for messages
        # The drainer's lease lives beside this path (delivery.lease): the SQLite file itself,
        # or a name in the temp dir derived from the URL for a server database.
        self.path = path
        self._closers: list[Callable[[], None]] = []

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` when the store closes (a connection held outside the pool)."""
        self._closers.append(closer)

    def unpooled(self) -> sa.Engine:
        """An engine of its own for a connection held outside the pool (a replica's lock):
        each connect a new connection, with the pool's settings and keepalives."""
        return sa.create_engine(
            self.engine.url, poolclass=sa.pool.NullPool, connect_args=self.connect_args
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def error(self, err: sa.exc.SQLAlchemyError) -> RelayStoreError:
        """``err`` as a sentence naming the store."""
        orig = getattr(err, "orig", None)
        if isinstance(orig, sqlite3.Error):
            return RelayStoreError(explain(orig, self.where))
        if self.dialect == "postgresql" and _unreachable(err):
            # Down, restarting, or the connection cut: SQLAlchemy saw a disconnect and the
            # pool reconnects on the next use; nothing here needs restarting.
            first = str(orig or err).strip().splitlines()[0] if str(orig or err).strip() else ""
            return RelayDatabaseUnavailable(
                f"{self.where}: the relay's database cannot be reached now ({first}); "
                "nothing was stored, try again shortly"
            )
        return RelayStoreError(f"{self.where}: {type(orig or err).__name__}: {orig or err}")

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction, committed when the block ends (rolled back on an error)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(**{WRITE: True})
                with conn.begin():
                    yield conn
        except sa.exc.SQLAlchemyError as err:
            raise self.error(err) from err

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """One read transaction (a consistent view), never writing."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.SQLAlchemyError as err:
            raise self.error(err) from err

    def revision(self) -> str | None:
        with self.read() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            heads = context.get_current_heads()
        return heads[0] if heads else None

    def close(self) -> None:
        try:
            for closer in self._closers:
                closer()
        finally:
            self.engine.dispose()

    def __enter__(self) -> RelayDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_engine(url: sa.URL, busy_timeout: float) -> tuple[sa.Engine, str]:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise RelayStoreError(
            f"{url}: the relay needs a database file (sqlite:////var/lib/timeback/relay.db), "
            "not an in-memory one: what it acknowledged must survive a restart"
        )
    path = Path(database).expanduser().resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RelayStoreError(f"{path}: cannot create its directory ({err.strerror})") from None
    engine = sa.create_engine(
        url.set(database=str(path)),
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        # We open transactions ourselves (below), so pysqlite must not.
        dbapi.isolation_level = None
        cursor = dbapi.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine, str(path)


# libpq's TCP settings (ignored on a Unix socket). An idle pooled connection sends a probe
# after 60 s: NAT gateways and cloud load balancers forget a flow after 4 to 6 minutes of
# silence, and a peer gone without a word is found within 60 + 5 x 10 s. A request's data left
# unacknowledged for 30 s (the server's host gone) fails it rather than wait out TCP's
# retransmissions (~15 minutes); a long query is not cut: its request was acknowledged.
TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 60,
    "keepalives_interval": 10,
    "keepalives_count": 5,
    "tcp_user_timeout": 30_000,
}


def _closed_by_server(dbapi_conn: Any) -> bool:
    """Whether the server has closed this idle connection, known without a round trip.

    Between transactions the server has nothing to say to us: a byte waiting on the socket is
    its goodbye (FATAL 57P01 and end of file on a restart or pg_terminate_backend, an end of
    file from a proxy, an error once keepalives gave up). The relay LISTENs to nothing; a
    stray notice would cost a reconnect, nothing more.
    """
    if dbapi_conn.closed or dbapi_conn.broken:
        return True
    try:
        fd = dbapi_conn.pgconn.socket
        if hasattr(select, "poll"):
            # poll, not select: a relay with thousands of clients has sockets numbered past
            # select's 1024, where select refuses (and every checkout would reconnect)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))  # POLLHUP and POLLERR come unasked
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError, dbapi_conn.Error):  # its socket already gone
        return True
    return bool(readable)


def _postgres_engine(
    url: sa.URL, connect_args: dict[str, Any], pool_size: int, max_overflow: int,
    pool_timeout: float,
) -> sa.Engine:  # fmt: skip
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
    )

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if _closed_by_server(dbapi_conn):
            # The pool discards this connection and makes a new one in its place (raising
            # the connect error, a RelayDatabaseUnavailable, while the server is down).
            raise sa.exc.DisconnectionError("the server closed this pooled connection")

    return engine


def open_relay_db(
    url: str,
    *,
    busy_timeout: float = 5.0,
    pool_size: int = 4,
    max_overflow: int = 4,
    pool_timeout: float = 10.0,
) -> RelayDatabase:
    """The relay's store at ``url``, created or upgraded to the newest schema.

    ``pool_*`` size a PostgreSQL connection pool (``c.Relay.db_pool_*``); SQLite ignores them.

    Refuses (:class:`RelayStoreError`, nothing changed) a store made by a newer relay and a
    database that has relay tables but not our version table.
    """
    if not isinstance(url, str) or not url.strip():
        raise RelayStoreError("the relay's db_url is empty (e.g. sqlite:////srv/relay.db)")
    try:
        parsed = sa.make_url(url.strip())
    except sa.exc.ArgumentError as err:
        raise RelayStoreError(f"{url!r} is not a database URL ({err})") from None
    where = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise RelayStoreError(
            f"{where}: the relay's store is SQLite (sqlite:////srv/relay.db) or PostgreSQL "
            f"(postgresql+psycopg://user:password@host/db), not {backend!r}"
        )
    connect_args: dict[str, Any] = {}  # SQLite's are its engine's own
    if backend == "sqlite":
        engine, path = _sqlite_engine(parsed, busy_timeout)
        where = path
    else:
        if parsed.drivername == "postgresql":
            # psycopg 3 is the driver the relay installs; SQLAlchemy's default is psycopg2.
            parsed = parsed.set(drivername="postgresql+psycopg")
        # lock_timeout: a write waits for another's lock as long as SQLite's busy timeout,
        # then fails (the sender retries) rather than hang a request.
        connect_args = {"options": f"-c lock_timeout={int(busy_timeout * 1000)}", **TCP_SETTINGS}
        try:
            engine = _postgres_engine(parsed, connect_args, pool_size, max_overflow, pool_timeout)
        except (sa.exc.ArgumentError, ImportError) as err:
            raise RelayStoreError(f"{where}: cannot open ({err})") from None
        digest = hashlib.sha256(where.encode()).hexdigest()[:16]
        path = str(Path(tempfile.gettempdir()) / f"timeback-relay-{digest}")
    db = RelayDatabase(engine, where, path, connect_args)
    try:
        _upgrade(db)
    except BaseException:
        db.close()
        raise
    return db


def _upgrade(db: RelayDatabase) -> None:
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    with db.write() as conn:
        if db.dialect == "postgresql":
            # Replicas starting together: one migrates, the others wait for it here, then
            # find the schema at head (the lock ends with the transaction).
            conn.exec_driver_sql("SET LOCAL lock_timeout = '120s'")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        names = set(sa.inspect(conn).get_table_names())
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        heads = context.get_current_heads()
        if not heads and names & set(TABLES):
            raise RelayStoreError(
                f"{db.where}: holds tables named like the relay's ({', '.join(sorted(names))}) "
                f"but no {VERSION_TABLE}: not a timeback relay store, left untouched"
            )
        for head in heads:
            try:
                known = script.get_revision(head)
            except CommandError:
                known = None
            if known is None:
                raise RelayStoreError(
                    f"{db.where}: made by a newer timeback-jupyter relay (schema revision "
                    f"{head!r}, this one knows up to {script.get_current_head()!r}); upgrade "
                    "timeback-jupyter, the store is left untouched"
                )
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
