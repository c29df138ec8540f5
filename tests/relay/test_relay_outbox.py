"""The relay's outbox, delivered by the server's own Drainer: to the real stand-in Timeback
(actors looked up in its OneRoster through the relay's connection) and to the LocalSink."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from timeback_jupyter.config import Credentials, Timeback, parse_app_config
from timeback_jupyter.connection import Connection
from timeback_jupyter.delivery import Drainer, LocalSink, OutboxPort, TimebackSink
from timeback_jupyter.identity import ActorResolver
from timeback_jupyter.relay.catalog import Catalog
from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.ingest import Relay
from timeback_jupyter.relay.outbox import RelayOutbox, claim_query
from timeback_jupyter.relay.users import UserDirectory
from timeback_jupyter.testing.standin import Fault, StandIn

from .conftest import ADA, BOB, CATALOG, T0, completion, envelope, make_relay, run_id, tse


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def relay_for(api: StandIn, url: str, clock) -> tuple[Relay, TimebackSink]:
    """The relay as the service builds it: one connection for the sink and the lookups."""
    api.users["ada@school.edu"] = ["u-ada"]
    api.users["bob@school.edu"] = ["u-bob"]
    cfg = Timeback(
        sink="timeback",
        base_url=api.url,
        auth_url=api.token_url,
        oneroster_base_url=api.url,
        request_timeout=5.0,
    )
    creds = Credentials(api.client_id, api.client_secret)
    connection = Connection.from_config(cfg, creds)
    sink = TimebackSink.from_config(cfg, creds, connection)
    resolver = ActorResolver.from_config(cfg, creds, connection=connection)
    users = UserDirectory("{name}@school.edu", cfg.oneroster_url, resolver)
    catalog = Catalog(parse_app_config(CATALOG, "staging"), "staging", cfg.oneroster_url)
    db = open_relay_db(url)
    return Relay(db, catalog, users, now=clock), sink


@pytest.mark.asyncio
async def test_the_drainer_delivers_the_relays_outbox_to_timeback_once_each(relay_db_url):
    with StandIn() as api:
        relay, sink = relay_for(api, relay_db_url(), lambda: T0 + 3600)
        assert isinstance(relay.outbox, OutboxPort)
        fake = FakeTime()
        drainer = Drainer(relay.outbox, sink, batch_size=4, now=fake.now, sleep=fake.sleep)
        relay.notify = drainer.notify
        a, b = run_id(), run_id()
        await relay.ingest(ADA, envelope(*[tse(a, T0 + 15 * i) for i in range(1, 6)]))
        await relay.ingest(BOB, envelope(tse(b, T0 + 15), completion(b, T0 + 20)))
        # one outage on the way: retried with the same ids, nothing twice
        api.script(Fault.error(503))
        report = await drainer.flush(timeout=120)
        assert report.remaining == 0 and report.sent == 7
        counts = Counter(api.received_ids)
        assert len(counts) == 7 and max(counts.values()) == 1
        by_actor = Counter(e["actor"]["id"].rsplit("/", 1)[-1] for e in api.received)
        assert by_actor == {"u-ada": 5, "u-bob": 2}
        assert relay.outbox.stats()["sent"] == 7
        assert relay.status()["outbox"]["pending"] == 0
        await sink.aclose()
        await drainer.stop()


@pytest.mark.asyncio
async def test_a_crash_mid_send_is_settled_not_sent_twice(relay_db_url):
    with StandIn() as api:
        relay, sink = relay_for(api, relay_db_url(), lambda: T0 + 3600)
        run = run_id()
        await relay.ingest(ADA, envelope(*[tse(run, T0 + 15 * i) for i in range(1, 4)]))
        # A previous relay process claimed all three, got them out, and died before acking.
        claimed = relay.outbox.claim_batch(10)
        payloads = [i.payload for i in claimed]
        await sink.send(
            {
                "sensor": claimed[0].sensor,
                "sendTime": "2026-01-15T10:00:00.000Z",
                "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
                "data": payloads,
            }
        )
        relay.db.close()
        reopened = RelayOutbox(open_relay_db(relay_db_url()))
        fake = FakeTime()
        drainer = Drainer(reopened, sink, now=fake.now, sleep=fake.sleep)
        report = await drainer.flush(timeout=60)
        assert report.remaining == 0
        assert sorted(api.received_ids) == sorted(p["id"] for p in payloads)  # once each
        await sink.aclose()
        await drainer.stop()
        reopened.db.close()


@pytest.mark.asyncio
async def test_the_local_sink_takes_everything_and_dead_letters_the_bad(relay):
    await relay.ingest(ADA, envelope(tse(run_id(), T0 + 15), tse(run_id(), T0 + 30, 15, 0)))
    # a row spoiled behind the relay's back goes to dead letters alone
    with relay.db.write() as conn:
        from timeback_jupyter.relay.schema import outbox

        conn.execute(outbox.insert().values(
            event_id="urn:uuid:bad", user_name="ada", kind="time_spent",
            sensor="https://nb.example.edu", payload={"id": "urn:uuid:bad"}, created_at=T0,
        ))  # fmt: skip
    fake = FakeTime()
    sink = LocalSink()
    drainer = Drainer(relay.outbox, sink, now=fake.now, sleep=fake.sleep)
    report = await drainer.flush(timeout=60)
    assert report.remaining == 0 and sink.accepted == 2
    [dead] = relay.outbox.dead_letters()
    assert dead.event_id == "urn:uuid:bad"
    assert drainer.status()["dead_letters"] == 1
    await drainer.stop()


def test_claim_release_ack_keep_order_and_sensor(relay, tmp_path):
    from timeback_jupyter.relay import outbox as ob

    with relay.db.write() as conn:
        for i, sensor in enumerate(["https://a.edu", "https://a.edu", "https://b.edu"] * 2):
            ob.enqueue(conn, {"id": f"urn:uuid:{i}"}, user="ada", run_id=None,
                       kind="time_spent", sensor=sensor, at=T0 + i)  # fmt: skip
    out = relay.outbox
    first = out.claim_batch(10)
    assert [i.event_id for i in first] == ["urn:uuid:0", "urn:uuid:1", "urn:uuid:3", "urn:uuid:4"]
    assert all(i.attempts == 1 for i in first) and out.depth() == 6
    out.release(["urn:uuid:0", "urn:uuid:1"], "retry")
    out.ack(["urn:uuid:3", "urn:uuid:4"])
    again = out.claim_batch(1)
    assert [(i.event_id, i.attempts) for i in again] == [("urn:uuid:0", 2)]
    assert [i.event_id for i in out.inflight()] == ["urn:uuid:0"]
    out.dead_letter(["urn:uuid:0"], "never")
    stats = out.stats()
    assert (stats["pending"], stats["inflight"], stats["sent"], stats["dead"]) == (3, 0, 2, 1)
    assert stats["oldest_pending_age"] is not None
    with pytest.raises(ValueError, match="limit"):
        out.claim_batch(0)


def test_both_outboxes_are_what_the_drainer_asks_for(relay, tmp_path):
    from timeback_jupyter.store import Store

    with Store(tmp_path / "server.sqlite3") as store:
        assert isinstance(store, OutboxPort)
    assert isinstance(relay.outbox, OutboxPort)
    # the drainer's lease lives beside the SQLite file; PostgreSQL's replicas need none
    if relay.db.dialect == "sqlite":
        assert relay.outbox.path == relay.db.path == str(tmp_path / "relay.db")
    else:
        assert relay.outbox.path == "" and relay.outbox.replica.key is not None


def test_the_claim_skips_locked_rows_where_the_database_can():
    from timeback_jupyter.relay.outbox_sql import CLAIM, FIRST_SENSOR

    for query in (claim_query("https://a.edu", 50), CLAIM, FIRST_SENSOR):
        assert "FOR UPDATE SKIP LOCKED" in str(query.compile(dialect=postgresql.dialect()))
        assert "FOR UPDATE" not in str(query.compile(dialect=sqlite.dialect()))


def test_two_claimers_on_postgresql_take_disjoint_batches_without_waiting(postgres_stores, clock):
    """Two relay processes' forwarders: while one holds its claim open, the other takes the
    next rows (and the next sensor's) instead of waiting or taking the same ones. (SQLite
    serializes claimers with BEGIN IMMEDIATE: nothing to skip there.)"""
    from timeback_jupyter.relay import outbox as ob

    relay = make_relay(postgres_stores(), clock)
    with relay.db.write() as conn:
        for i, sensor in enumerate(["https://a.edu"] * 4 + ["https://b.edu"] * 2):
            ob.enqueue(conn, {"id": f"urn:uuid:{i}"}, user="ada", run_id=None,
                       kind="time_spent", sensor=sensor, at=T0 + i)  # fmt: skip
    other = RelayOutbox(open_relay_db(postgres_stores()))
    try:
        with relay.db.write() as held:  # the first claimer, mid-claim
            mine = held.execute(ob.claim_query("https://a.edu", 2)).all()
            assert [r.event_id for r in mine] == ["urn:uuid:0", "urn:uuid:1"]
            started = time.monotonic()
            theirs = other.claim_batch(10)
            assert time.monotonic() - started < 2  # lock_timeout would be 5 s
            assert [i.event_id for i in theirs] == ["urn:uuid:2", "urn:uuid:3"]
            # everything of sensor a is held or claimed now: the next claim is sensor b's
            assert [i.event_id for i in other.claim_batch(10)] == ["urn:uuid:4", "urn:uuid:5"]
            assert other.claim_batch(10) == []
    finally:
        other.db.close()
        relay.db.close()
