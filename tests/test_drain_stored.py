"""A batch drained as stored (delivery/stored.py): the outbox keeps whether our builder made
each event (``outbox.checked``), the local sink accepts those unparsed and checks the others,
and the batch is read, checked and acknowledged in one call on the store thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter import caliper
from timeback_jupyter.delivery import Drainer, LocalSink, RejectedError
from timeback_jupyter.model import Run, Window
from timeback_jupyter.store import KIND_TIME_SPENT, SCHEMA_VERSION, Store, StoreError, migrations

from .test_local_sink import ACTOR, SENSOR, TARGET  # the same student and activity


def built(k: int = 0, run_id: str | None = None) -> dict[str, Any]:
    run_id = run_id or str(uuid.uuid4())
    window = Window(run_id, 1e9 + 15 * k, 1e9 + 15 * k + 15, 10.0, 5.0)
    return caliper.time_spent_event(window, run_id, ACTOR, TARGET)


def copied(event: dict[str, Any]) -> dict[str, Any]:
    """The same event as a plain dict: as an older release or another writer stored it."""
    return json.loads(json.dumps(event))


def flags(path: Path) -> dict[str, int]:
    raw = sqlite3.connect(path)
    try:
        return dict(raw.execute("SELECT event_id, checked FROM outbox").fetchall())
    finally:
        raw.close()


def drain(store: Store, sink: LocalSink | None = None) -> Any:
    drainer = Drainer(store, sink or LocalSink(), batch_size=50, retry_initial=0.01)

    async def go() -> Any:
        try:
            return await drainer.flush(timeout=60)
        finally:
            await drainer.stop()

    return asyncio.run(go())


def test_the_outbox_marks_what_our_builder_made_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    run = Run(id=str(uuid.uuid4()), activity=TARGET.activity, student="s", attempt=1,
              started_at=1e9)  # fmt: skip
    ours, theirs, window_event = built(1), copied(built(2)), built(3, run.id)
    assert type(ours) is caliper.BuiltEvent and type(theirs) is dict
    with Store(path) as store:
        store.insert_run(run)
        store.enqueue(ours, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        store.enqueue(theirs, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        store.record_window(Window(run.id, 1e9, 1e9 + 15, 15.0, 0.0), window_event, SENSOR)
    assert flags(path) == {ours["id"]: 1, theirs["id"]: 0, window_event["id"]: 1}


def test_a_stored_envelope_is_the_envelope_of_its_events(tmp_path: Path) -> None:
    events = [built(k) for k in range(3)] + [copied(built(9))]
    with Store(tmp_path / "s.sqlite3") as store:
        for e in events:
            store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        batch = store.stored_batch(10)
    assert batch is not None and batch.unchecked == [3]
    assert batch.event_ids == [e["id"] for e in events]
    stored = caliper.stored_envelope(batch.texts, batch.sensor, 1.7e9, batch.unchecked)
    as_sent = json.loads(stored.text())
    assert as_sent == caliper.envelope(events, SENSOR, 1.7e9)
    assert as_sent == caliper.official_envelope(events, SENSOR, 1.7e9)  # the SDK's own
    with pytest.raises(caliper.CaliperInputError, match="sensor"):
        caliper.stored_envelope(batch.texts, "not a url", 1.7e9, [])
    with pytest.raises(caliper.CaliperInputError, match="events"):
        caliper.stored_envelope([], SENSOR, 1.7e9, [])


def test_the_local_sink_parses_only_what_no_builder_of_ours_made() -> None:
    sink = LocalSink()
    # Marked as our builder's: accepted as stored, so not even read (this text is no event).
    sink.accept_stored(caliper.stored_envelope(["{}", "not json"], SENSOR, 1.7e9, []))
    assert sink.accepted == 2
    bad = copied(built(1))
    bad["object"]["subject"] = "Maths"
    texts = [json.dumps(built(0)), json.dumps(bad), "not json"]
    with pytest.raises(RejectedError) as caught:
        sink.accept_stored(caliper.stored_envelope(texts, SENSOR, 1.7e9, [1, 2]))
    assert "object.subject" in caught.value.reason
    assert caught.value.event_ids == [bad["id"], "#2"]
    assert sink.accepted == 2


def test_a_drain_delivers_ours_and_old_rows_and_dead_letters_a_bad_copy(tmp_path: Path) -> None:
    ours = [built(k) for k in range(60)]
    old = copied(built(70))  # valid, stored by another writer: checked by the sink
    bad = copied(built(71))
    bad["object"]["subject"] = "Maths"
    with Store(tmp_path / "s.sqlite3") as store:
        for e in [*ours[:30], old, bad, *ours[30:]]:
            store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        report = drain(store)
        assert (report.sent, report.rejected, report.remaining) == (61, 1, 0)
        assert [d.event_id for d in store.dead_letters()] == [bad["id"]]
        assert store.stats()["sent"] == 61
        sent = [e["id"] for e in store.events(status="sent")]
    assert sent == [e["id"] for e in [*ours[:30], old, *ours[30:]]]  # in order, each once


class AckFails(Store):
    """A store whose first ack fails, as a kill -9 between the check and the ack would end."""

    failed = False

    def ack(self, event_ids):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise StoreError(f"{self.path}: disk I/O error (the ack did not commit)")
        return super().ack(event_ids)


def test_a_batch_whose_ack_failed_is_delivered_again_once(tmp_path: Path) -> None:
    with AckFails(tmp_path / "s.sqlite3") as store:
        events = [built(k) for k in range(20)]
        for e in events:
            store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        sink = LocalSink()
        drainer = Drainer(store, sink, batch_size=50)

        async def go() -> None:
            with pytest.raises(StoreError, match="did not commit"):
                await drainer.drain_once()
            assert store.stats()["pending"] == 20  # nothing lost, nothing marked
            assert (await drainer.drain_once()).sent == 20
            assert (await drainer.drain_once()).idle
            await drainer.stop()

        asyncio.run(go())
        assert (store.stats()["pending"], store.stats()["sent"]) == (0, 20)
        assert sink.accepted == 40  # checked twice, kept once: nothing leaves the machine


def test_a_version_4_store_upgrades_in_place_and_its_rows_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite3"
    before = [built(k) for k in range(3)]
    bad = copied(built(5))
    bad["generated"]["items"] = [{"type": "sleeping", "value": 1}]
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
        m.setattr(migrations, "SCHEMA_VERSION", 4)
        Store(path).close()  # the schema of version 4
    raw = sqlite3.connect(path)
    assert "checked" not in {r[1] for r in raw.execute("PRAGMA table_info(outbox)")}
    with raw:  # rows as a release of version 4 wrote them
        raw.executemany(
            "INSERT INTO outbox (event_id, kind, sensor, payload, created_at, status) "
            "VALUES (?, 'time_spent', ?, ?, 1e9, ?)",
            [(e["id"], SENSOR, json.dumps(e), "sent" if e is before[0] else "pending")
             for e in [*before, bad]],
        )  # fmt: skip
    raw.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        assert set(flags(path).values()) == {0}  # an older release's rows: not known as ours
        after = built(9)
        store.enqueue(after, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        assert flags(path)[after["id"]] == 1
        report = drain(store)
        assert (report.sent, report.rejected) == (3, 1)  # two old rows and the new one
        assert [d.event_id for d in store.dead_letters()] == [bad["id"]]
        sent = [e["id"] for e in store.events(status="sent")]
        assert sent == [before[0]["id"], before[1]["id"], before[2]["id"], after["id"]]


class Buggy(LocalSink):
    remote = False  # its own class's promise, as the stored path asks

    def accept_stored(self, envelope: caliper.StoredEnvelope) -> None:
        raise ValueError("a bug in the sink")


def test_a_sink_that_fails_unexpectedly_leaves_the_batch_pending_and_backs_off(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        for k in range(5):
            store.enqueue(built(k), run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)

        async def go() -> None:
            drainer = Drainer(store, Buggy(), batch_size=50, retry_initial=0.5)
            report = await drainer.drain_once()
            assert (report.sent, report.retried, report.delay > 0) == (0, 5, True)
            assert report.error == "ValueError: a bug in the sink"
            await drainer.stop()
            assert store.stats()["pending"] == 5
            again = Drainer(store, LocalSink())
            assert (await again.flush(timeout=60)).sent == 5
            await again.stop()

        asyncio.run(go())
