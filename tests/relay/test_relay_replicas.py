"""Replicas of the relay on one store: one OAuth token between them (fetched by whichever finds
it expired, dropped after a 401 only if still the refused one), and each replica settles only
its own sends of unknown outcome and those of replicas gone, never a live one's in flight."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa

from timeback_jupyter.config import Credentials
from timeback_jupyter.connection import Connection
from timeback_jupyter.relay import outbox as ob
from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.outbox import RelayOutbox
from timeback_jupyter.relay.schema import relay_tokens
from timeback_jupyter.relay.tokens import share_tokens
from timeback_jupyter.testing.standin import TOKEN_PATH, StandIn

from .conftest import T0
from .hub import wait_until


@pytest.fixture
def standin():
    with StandIn("relay-client", "relay-secret", token_ttl=3600) as api:
        yield api


def connection(standin: StandIn) -> Connection:
    return Connection(
        Credentials("relay-client", "relay-secret"),
        base_url=standin.url,
        auth_url=standin.token_url,
        oneroster_base_url=standin.url,
    )


def token_requests(standin: StandIn) -> int:
    return sum(1 for r in standin.requests if r.path == TOKEN_PATH)


@pytest.mark.asyncio
async def test_replicas_share_one_token(relay_db_url, standin):
    url = relay_db_url()
    dbs = [open_relay_db(url) for _ in range(3)]
    try:
        managers = [share_tokens(connection(standin), db) for db in dbs]
        tokens = await asyncio.gather(*(m.get_token() for m in managers for _ in range(3)))
        assert len(set(tokens)) == 1
        assert token_requests(standin) == 1
        assert sum(m.fetched for m in managers) == 1
        # the Caliper client and the OneRoster lookup of a connection take this manager
        conn = connection(standin)
        shared = share_tokens(conn, dbs[0])
        assert conn.token_manager("caliper") is shared
        assert conn.provider().get_token_manager("oneroster") is shared
        # expired in the store: the next replica asking fetches one, the others take it
        with dbs[0].write() as c:
            c.execute(sa.update(relay_tokens).values(expires_at=0.0))
        for m in managers:
            m._token_expiry = 0.0  # their own caches expired too
        renewed = [await m.get_token() for m in managers]
        assert len(set(renewed)) == 1 and renewed[0] != tokens[0]
        assert token_requests(standin) == 2
    finally:
        for db in dbs:
            db.close()


@pytest.mark.asyncio
async def test_a_refused_token_is_dropped_only_if_still_the_stored_one(relay_db_url, standin):
    url = relay_db_url()
    with open_relay_db(url) as one, open_relay_db(url) as two:
        first = share_tokens(connection(standin), one)
        second = share_tokens(connection(standin), two)
        old = await first.get_token()
        assert await second.get_token() == old
        first.invalidate()  # a 401 on replica one: refetched once, by the next asker
        assert await second.get_token() == old  # its own cache is still valid: no request
        renewed = await first.get_token()
        assert renewed != old and token_requests(standin) == 2
        # two is refused its (old) token now: the store keeps the renewed one, not dropped
        second.invalidate()
        assert await second.get_token() == renewed
        assert token_requests(standin) == 2


def _claim_in_another_process(url: str, job: str = "") -> int:
    """A replica in its own process claims one event (sent as Timeback's job ``job``, if
    given) and stays alive; returns its pid."""
    code = (
        "import sys, time\n"
        "from timeback_jupyter.relay.database import open_relay_db\n"
        "from timeback_jupyter.relay.outbox import RelayOutbox\n"
        "out = RelayOutbox(open_relay_db(sys.argv[1]))\n"
        "ids = [i.event_id for i in out.claim_batch(1)]\n"
        "if sys.argv[2]: out.record_job(ids, sys.argv[2])\n"
        "print(ids, out.replica.key, flush=True)\n"
        "time.sleep(600)\n"
    )
    return subprocess.Popen(  # type: ignore[return-value]
        [sys.executable, "-c", code, url, job], stdout=subprocess.PIPE, text=True
    )


def _enqueue(outbox: RelayOutbox, count: int) -> None:
    with outbox.db.write() as conn:
        for i in range(count):
            ob.enqueue(conn, {"id": f"urn:uuid:{i}"}, user="ada", run_id=None,
                       kind="time_spent", sensor="https://a.edu", at=T0 + i)  # fmt: skip


def test_a_live_replicas_send_is_its_own_a_dead_ones_is_anyones(postgres_stores):
    url = postgres_stores()
    mine = RelayOutbox(open_relay_db(url))
    try:
        _enqueue(mine, 3)
        other = _claim_in_another_process(url)
        try:
            line = other.stdout.readline()
            assert "urn:uuid:0" in line, line
            # mid-send on a live replica: not this one's to settle, nor to put back
            assert [i.event_id for i in mine.claim_batch(1)] == ["urn:uuid:1"]
            assert [i.event_id for i in mine.inflight()] == ["urn:uuid:1"]
            mine.release(["urn:uuid:0"], "not mine")
            assert mine.stats()["inflight"] == 2
        finally:
            other.kill()
            other.wait(30)

        # gone (its lock went with its session): its send is settled by whoever looks
        def orphaned() -> list[str]:
            return [i.event_id for i in mine.inflight()]

        wait_until(lambda: orphaned() == ["urn:uuid:0", "urn:uuid:1"], "the lock to go")
        mine.release(["urn:uuid:0"], "its replica died; not found upstream")
        assert [i.event_id for i in mine.claim_batch(5)] == ["urn:uuid:0", "urn:uuid:2"]
    finally:
        mine.db.close()


def test_a_replica_takes_its_lock_again_after_the_database_cut_its_session(postgres_stores):
    url = postgres_stores()
    out = RelayOutbox(open_relay_db(url))
    try:
        out.inflight()
        key = out.replica.key
        with out.db.write() as conn:  # what a restart does to every session
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                f"WHERE locktype = 'advisory' AND objid = {key} AND objsubid = 2"
            )
        out.replica._checked = 0.0  # due for its ping now
        out.inflight()
        # the new lock connection, outside the pool, has the pool's keepalives too: idle
        # for hours, it is the one a NAT would drop silently
        assert out.replica._conn is not None
        fd = out.replica._conn.connection.dbapi_connection.pgconn.socket
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:  # a dup
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        with out.db.read() as conn:
            held = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                f"AND objid = {out.replica.key} AND objsubid = 2 AND granted"
            ).scalar_one()
        assert held == 1
    finally:
        out.db.close()


def test_a_replica_follows_its_own_jobs_and_a_dead_ones(postgres_stores):
    url = postgres_stores()
    mine = RelayOutbox(open_relay_db(url))
    try:
        _enqueue(mine, 2)
        other = _claim_in_another_process(url, "job-theirs")
        try:
            line = other.stdout.readline()
            assert "urn:uuid:0" in line, line
            mine.record_job([i.event_id for i in mine.claim_batch(1)], "job-mine")
            mine.record_job([], "job-carrying-nothing")  # anyone's: confirming it is harmless
            pending = {j.job_id: mine.job_events(j.job_id) for j in mine.jobs_pending()}
            assert pending == {"job-mine": ["urn:uuid:1"], "job-carrying-nothing": []}
        finally:
            other.kill()
            other.wait(30)

        def followed() -> set[str]:
            return {j.job_id for j in mine.jobs_pending()}

        # its replica gone, its job is this one's to follow (and confirm)
        wait_until(lambda: "job-theirs" in followed(), "the lock to go")
        assert mine.confirm("job-theirs") == 1
        assert followed() == {"job-mine", "job-carrying-nothing"}
    finally:
        mine.db.close()


def test_a_replica_with_no_send_of_its_own_open_looks_for_orphans_only_now_and_then(
    postgres_stores, monkeypatch
):
    url = postgres_stores()
    mine = RelayOutbox(open_relay_db(url))
    try:
        _enqueue(mine, 3)
        assert mine.inflight() == []
        other = _claim_in_another_process(url)
        assert "urn:uuid:0" in other.stdout.readline()
        other.kill()
        other.wait(30)
        locks = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND "
            "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        with mine.db.read() as conn:  # its lock gone with its session: only this one's left
            wait_until(lambda: conn.exec_driver_sql(locks).scalar_one() == 1, "the lock to go")
        monkeypatch.setattr(ob, "ORPHANS_EVERY", 3600.0)
        assert mine.inflight() == []  # none of its own open: not asked again yet
        # a send of its own open: the store is asked, and the orphan is found with it
        [own] = mine.claim_batch(1)
        assert [i.event_id for i in mine.inflight()] == ["urn:uuid:0", own.event_id]
        mine.record_job([own.event_id], "job-1")
        assert mine.inflight() == []  # settled: back to looking now and then
        monkeypatch.setattr(ob, "ORPHANS_EVERY", 0.0)
        assert [i.event_id for i in mine.inflight()] == ["urn:uuid:0"]
    finally:
        mine.db.close()
