"""The drain's hot path on a real store: one statement per claim and per ack, and the local
sink's batches read without a claim (issue 20)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.session import Session

from timeback_jupyter.delivery import Drainer, LocalSink
from timeback_jupyter.model import InvalidInput
from timeback_jupyter.server.kernels import _Classifier
from timeback_jupyter.store import Store
from timeback_jupyter.store.outbox import CHUNK

SENSOR = "https://nb.example.edu"
OTHER = "https://other.example.edu"


def event(n: int) -> dict[str, Any]:
    return {"id": f"urn:uuid:{uuid.uuid4()}", "n": n}


def statuses(store: Store) -> list[tuple[int, str, int]]:
    rows = store._db.execute("SELECT seq, status, attempts FROM outbox ORDER BY seq")
    return [tuple(r) for r in rows.fetchall()]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.sqlite3")
    yield s
    s.close()


def test_pending_batch_reads_what_a_claim_would_take_and_marks_nothing(store: Store):
    sensors = [SENSOR, OTHER, SENSOR, SENSOR]
    for i, sensor in enumerate(sensors):
        store.enqueue(event(i), run_id=None, kind="x", sensor=sensor)
    before = statuses(store)
    batch = store.pending_batch(10)
    assert [i.payload["n"] for i in batch] == [0, 2, 3]
    assert all(i.sensor == SENSOR and i.attempts == 0 and i.claimed_at is None for i in batch)
    assert statuses(store) == before  # nothing marked
    claimed = store.claim_batch(10)
    assert [i.event_id for i in claimed] == [i.event_id for i in batch]
    assert all(i.attempts == 1 and i.claimed_at is not None for i in claimed)
    assert [s for _, s, _ in statuses(store)] == ["inflight", "pending", "inflight", "inflight"]
    assert [i.payload["n"] for i in store.pending_batch(10)] == [1]
    with pytest.raises(InvalidInput, match="limit"):
        store.pending_batch(0)


def test_a_claim_marks_exactly_its_batch_and_ack_takes_more_ids_than_a_statement(store: Store):
    n = CHUNK + 7
    for i in range(n + 3):
        store.enqueue(event(i), run_id=None, kind="x", sensor=SENSOR)
    batch = store.claim_batch(n)
    assert len(batch) == n
    rows = statuses(store)
    assert [s for _, s, _ in rows] == ["inflight"] * n + ["pending"] * 3
    store.ack([i.event_id for i in batch])
    assert [s for _, s, _ in statuses(store)] == ["sent"] * n + ["pending"] * 3
    store.ack([i.event_id for i in batch])  # again: nothing changes
    assert store.stats()["sent"] == n


@pytest.mark.asyncio
async def test_the_local_sink_is_drained_without_claims(store: Store):
    for i in range(7):
        store.enqueue(event(i), run_id=None, kind="x", sensor=SENSOR)
    claims: list[int] = []
    claim = store.claim_batch
    store.claim_batch = lambda limit: claims.append(limit) or claim(limit)  # type: ignore[method-assign]
    drainer = Drainer(store, _ShapeFreeSink(), batch_size=3)
    report = await drainer.flush(timeout=30)
    assert (report.sent, report.remaining) == (7, 0)
    assert claims == []  # read, never marked inflight
    assert store.inflight() == []
    assert {s for _, s, _ in statuses(store)} == {"sent"}
    await drainer.stop()


class _ShapeFreeSink(LocalSink):
    """The local sink, accepting these minimal test events as they are."""

    remote = False  # declared by the class itself: nothing leaves the store

    async def send(self, envelope: dict[str, Any]) -> str | None:
        self.accepted += len(envelope["data"])
        return None


@pytest.mark.asyncio
async def test_a_sink_that_does_not_promise_it_itself_is_claimed_for(store: Store):
    class Waiting(_ShapeFreeSink):
        remote = True

    class Inherits(LocalSink):  # another send: it may suspend, its batch must show inflight
        async def send(self, envelope: dict[str, Any]) -> str | None:
            return None

    seen: list[int] = []
    claim = store.claim_batch
    store.claim_batch = lambda limit: seen.append(limit) or claim(limit)  # type: ignore[method-assign]
    for sink in (Waiting(), Inherits()):
        seen.clear()
        store.enqueue(event(0), run_id=None, kind="x", sensor=SENSOR)
        drainer = Drainer(store, sink, batch_size=3)
        assert (await drainer.flush(timeout=30)).sent == 1
        assert seen and seen[0] == 3  # claimed (marked inflight) before the send
        await drainer.stop()


@pytest.mark.parametrize(
    ("state", "parent", "kind"),
    [("busy", "execute_request", "execute_start"), ("idle", "execute_request", "execute_end"),
     ("busy", "comm_msg", "comm"), ("busy", "inspect_request", None)],
)  # fmt: skip
def test_raw_fields_and_decoding_agree(state: str, parent: str, kind: str | None):
    session = Session(key=b"k")
    classify = _Classifier(session)
    msg = session.msg("status", {"execution_state": state}, parent=session.msg(parent, {}))
    assert classify(session.serialize(msg), True) == kind
    # A header whose fields hold escapes is decoded, not read raw: same answer.
    msg["header"]["username"] = 'a "quoted" "msg_type": "status" name\\'
    msg["parent_header"]["username"] = '"msg_type": "execute_request"'
    assert classify(session.serialize(msg), True) == kind
