"""PostgreSQL connections used without a ping, and what happens when they die.

The relay's pool does not ping a connection before each use (one round trip per request):
libpq's own trace of the wire shows what a render and a group commit send. A connection the
server closed is seen at checkout without a round trip and replaced; one that dies unseen
(cut mid-transaction) fails its request as "cannot be reached now" (a 503), and the next
request works. The connections carry TCP keepalives (the server's view of them is checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from psycopg import pq

from timeback_jupyter.relay import filters, views
from timeback_jupyter.relay.database import RelayDatabaseUnavailable
from timeback_jupyter.relay.schema import received
from timeback_jupyter.testing.postgres import PostgresServer

from .conftest import ADA, BOB, T0, Clock, envelope, make_relay, run_id, tse

POOLED = 4  # connections the tests put in the pool before cutting them
_LIBC = ctypes.CDLL(None)


class Wire:
    """What the engine's connections send and receive, from libpq's trace of the protocol
    (every connection the engine makes from now on). A round trip is one ReadyForQuery: the
    server's "done, your turn" after each query (no pipelining here)."""

    def __init__(self, engine: sa.Engine, path: Path) -> None:
        # libpq writes on a descriptor of its own (appending), we read on another
        self._out, self._in = path.open("ab"), path.open("w+b", buffering=0)
        engine.dispose()  # traced from their first byte: connections made after this
        sa.event.listen(engine, "connect", self._trace)

    def _trace(self, dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.pgconn.trace(self._out.fileno())
        dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def during(self, work: Callable[[], object]) -> list[str]:
        """The trace's lines while ``work`` runs."""
        start = self._flushed()
        work()
        end = self._flushed()
        self._in.seek(start)
        return self._in.read(end - start).decode().splitlines()

    def _flushed(self) -> int:
        # libpq writes through a stdio FILE of its own, buffered: flush every one of them
        _LIBC.fflush(None)
        return self._in.seek(0, 2)

    def close(self) -> None:
        self._out.close()
        self._in.close()


def round_trips(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("B\t") and "\tReadyForQuery\t" in line)


def sent(lines: list[str]) -> list[str]:
    """The statements sent: a simple Query's text, or a Parse's (prepared once)."""
    out = []
    for line in lines:
        parts = line.split("\t")
        if parts[0] == "F" and parts[2] in ("Query", "Parse"):
            out.append(parts[3].strip())
    return out


def pings(lines: list[str]) -> list[str]:
    # SQLAlchemy's pre-ping on psycopg is the empty query ";" (elsewhere SELECT 1)
    return [s for s in sent(lines) if s in ('";"', '"SELECT 1"', '"select 1"')]


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Callable[[sa.Engine], Wire]]:
    made: list[Wire] = []

    def make(engine: sa.Engine) -> Wire:
        made.append(Wire(engine, tmp_path / f"wire{len(made)}.trace"))
        return made[-1]

    yield make
    for w in made:
        w.close()


def ingest(relay: Any, user: Any, *events: dict[str, Any]) -> Any:
    return asyncio.run(relay.ingest(user, envelope(*events)))


def test_a_render_and_a_group_commit_send_no_ping(postgres_stores, wire, capsys):
    relay = make_relay(postgres_stores(), Clock(T0 + 3600))
    try:
        trace = wire(relay.db.engine)
        run = run_id()
        columns = views.catalog_columns(relay.catalog)

        def render() -> None:
            chosen = filters.parse({}, columns)
            view = views.overview(relay.db, relay.catalog, "class-a", ["ada", "bob"],
                                  relay.now(), chosen)  # fmt: skip
            assert view.rows()

        windows = iter(range(1, 100))

        def commit() -> None:
            answer = ingest(relay, ADA, tse(run, T0 + 15 * next(windows)))
            assert answer.count("accepted") == 1

        # psycopg prepares a statement after its fifth use (a round trip more, once per
        # connection): counted warm, as a running relay sends them
        for _ in range(10):
            render()
            commit()
        rendered, committed = trace.during(render), trace.during(commit)
        assert pings(rendered) == [] and pings(committed) == []
        # BEGIN, the cells, the accuracies, COMMIT
        assert round_trips(rendered) == 4, sent(rendered)
        # BEGIN, lock the users, read, write, COMMIT
        assert round_trips(committed) == 5, sent(committed)
        with capsys.disabled():
            print(f"\nround trips: overview {round_trips(rendered)}, "
                  f"group commit {round_trips(committed)}")  # fmt: skip
    finally:
        relay.db.close()


def fill_pool(engine: sa.Engine, n: int = POOLED) -> set[int]:
    """``n`` connections in the pool, each used once; their backends' pids."""
    with contextlib.ExitStack() as held:
        conns = [held.enter_context(engine.connect()) for _ in range(n)]
        pids = {c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in conns}
        for c in conns:
            c.rollback()
    assert engine.pool.checkedin() == n  # type: ignore[attr-defined]
    return pids


def terminate(server: PostgresServer, pids: set[int], *, wait: bool) -> None:
    """What a restart does to each session: the server ends it (FATAL 57P01) and closes it."""
    with server.admin() as admin:
        killed = admin.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid = ANY(%s)) t",
            (list(pids),),
        ).fetchone()
        assert killed == (len(pids),)
        deadline = time.monotonic() + 30
        while wait and admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the backends did not end"
            time.sleep(0.05)


def backend_pid(conn: sa.Connection) -> int:
    return conn.connection.dbapi_connection.info.backend_pid  # known, no round trip


def server_of(postgres_stores: Any) -> PostgresServer:
    return postgres_stores._server  # the session's server, the stores' own


def test_connections_the_server_closed_are_replaced_at_checkout_without_a_503(postgres_stores):
    """pg_terminate_backend on every pooled connection (the backends gone before the next
    request, as after a restart): every request is answered, none pays a ping."""
    relay = make_relay(postgres_stores(), Clock(T0 + 3600))
    try:
        run = run_id()
        before = fill_pool(relay.db.engine)
        terminate(server_of(postgres_stores), before, wait=True)
        for k in range(1, 2 * POOLED + 1):  # every pooled connection checked out again
            assert ingest(relay, ADA, tse(run, T0 + 15 * k)).count("accepted") == 1
            assert relay.lookup(ADA, f"nothing-{k}") is None
        after = fill_pool(relay.db.engine)
        assert not after & before
    finally:
        relay.db.close()


def test_connections_killed_by_postgresql_cost_at_most_one_503_each(postgres_stores):
    """The backends killed while the relay keeps working (the kill racing the next checkout):
    at most one request per pooled connection hears "cannot be reached now", nothing of it
    is stored, the same request again is taken once, and every request after works."""
    relay = make_relay(postgres_stores(), Clock(T0 + 3600))
    try:
        run = run_id()
        before = fill_pool(relay.db.engine)
        errors: list[RelayDatabaseUnavailable] = []
        # pg_terminate_backend only signals: the backends end while the requests go on
        terminate(server_of(postgres_stores), before, wait=False)
        taken = 0
        for k in range(1, 4 * POOLED + 1):
            event = tse(run, T0 + 15 * k, event_id=f"urn:uuid:{uuid.uuid4()}")
            for _ in range(POOLED + 1):
                try:
                    answer = ingest(relay, ADA, event)
                except RelayDatabaseUnavailable as err:
                    errors.append(err)
                    continue
                assert answer.events[0]["status"] == "accepted", answer.events
                taken += 1
                break
        assert taken == 4 * POOLED
        assert len(errors) <= POOLED, [str(e) for e in errors]
        assert all("cannot be reached now" in str(e) for e in errors)
        with relay.db.read() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(received)).scalar_one()
        assert stored == 4 * POOLED and relay.outbox.depth() == 4 * POOLED
    finally:
        relay.db.close()


def test_a_healthy_connection_on_a_high_descriptor_is_kept(postgres_stores):
    """A relay serving thousands of clients has sockets numbered past 1024: the checkout's
    look must still see a healthy connection as healthy (select() refuses such numbers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    relay = make_relay(postgres_stores(), Clock(T0 + 3600))
    filler: list[int] = []
    try:
        relay.db.engine.dispose()
        while not filler or filler[-1] < 1100:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        pids = set()
        for _ in range(3):
            with relay.db.read() as conn:
                assert conn.connection.dbapi_connection.pgconn.socket > 1024
                pids.add(backend_pid(conn))
        assert len(pids) == 1  # one connection, never replaced
    finally:
        for fd in filler:
            os.close(fd)
        relay.db.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("where", ["read", "write", "ingest"])
def test_a_connection_cut_mid_transaction_is_unavailable_then_the_next_request_works(
    postgres_stores, where
):
    """The one death the checkout cannot see: the connection cut while a transaction is on
    it. That request is RelayDatabaseUnavailable (the 503 that says "cannot be reached now"),
    SQLAlchemy calls it a disconnect and the next request gets a new connection."""
    relay = make_relay(postgres_stores(), Clock(T0 + 3600))
    server = server_of(postgres_stores)
    try:
        run = run_id()
        cut_events = (
            tse(run, T0 + 15, event_id=f"urn:uuid:{uuid.uuid4()}"),
            tse(run, T0 + 30, event_id=f"urn:uuid:{uuid.uuid4()}"),
        )
        with pytest.raises(RelayDatabaseUnavailable, match="cannot be reached now") as cut:
            if where == "ingest":
                # the group commit's own transaction, cut as it locks the users' rows
                cuts: list[int] = []

                @sa.event.listens_for(relay.db.engine, "before_cursor_execute")
                def _kill(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                    if not cuts and "FOR UPDATE" in statement.upper():
                        cuts.append(backend_pid(conn))
                        terminate(server, set(cuts), wait=True)

                ingest(relay, ADA, *cut_events)
            else:
                with getattr(relay.db, where)() as conn:
                    terminate(server, {backend_pid(conn)}, wait=True)
                    conn.exec_driver_sql("SELECT 1")
        if where == "ingest":
            sa.event.remove(relay.db.engine, "before_cursor_execute", _kill)
            assert len(cuts) == 1
        assert isinstance(cut.value.__cause__, sa.exc.DBAPIError)
        assert cut.value.__cause__.connection_invalidated
        answer = ingest(relay, ADA, *cut_events)
        assert answer.count("accepted") == 2  # nothing of the cut request was stored
        assert ingest(relay, BOB, tse(run_id(), T0 + 15)).count("accepted") == 1
    finally:
        relay.db.close()


def test_the_connections_carry_tcp_keepalives(postgres_stores):
    """libpq set them on the relay's own end of each connection (the server cannot see them)."""
    relay = make_relay(postgres_stores(), Clock(T0 + 3600))
    try:
        with relay.db.read() as conn:
            fd = conn.connection.dbapi_connection.pgconn.socket
            with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:  # a dup
                tcp = socket.IPPROTO_TCP
                shown = {
                    "on": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    "idle": sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
                    "interval": sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
                    "count": sock.getsockopt(tcp, socket.TCP_KEEPCNT),
                    "user_timeout_ms": sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
                }
    finally:
        relay.db.close()
    assert shown == {"on": 1, "idle": 60, "interval": 10, "count": 5, "user_timeout_ms": 30_000}
