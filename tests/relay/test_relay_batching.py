"""Group commit: concurrent envelopes share a transaction, each answered after its commit, and
one that fails is rolled back alone."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from timeback_jupyter.relay import rules
from timeback_jupyter.relay.batching import GroupCommit
from timeback_jupyter.relay.users import HubUser

from .conftest import T0, envelope, run_id, tse


@pytest.mark.asyncio
async def test_concurrent_envelopes_share_commits_and_each_gets_its_answer(relay):
    commits = []
    sa.event.listen(relay.db.engine, "commit", lambda conn: commits.append(1))
    users = [HubUser(f"s{i}") for i in range(30)]
    answers = await asyncio.gather(
        *(relay.ingest(u, envelope(tse(run_id(), T0 + 15))) for u in users)
    )
    assert all(a.to_dict()["accepted"] == 1 for a in answers)
    assert relay.outbox.depth() == 30
    assert len(commits) < 30  # the first alone, then the rest together


@pytest.mark.asyncio
async def test_an_envelope_that_fails_is_rolled_back_alone(relay, monkeypatch):
    real = rules.apply

    def apply(r, turn, event):
        if turn.user == "mallory":
            real(r, turn, event)  # its writes happen, then a bug strikes
            raise RuntimeError("a bug")
        return real(r, turn, event)

    monkeypatch.setattr("timeback_jupyter.relay.ingest.apply", apply)
    good, bad = HubUser("ada"), HubUser("mallory")
    results = await asyncio.gather(
        relay.ingest(good, envelope(tse(run_id(), T0 + 15))),
        relay.ingest(bad, envelope(tse(run_id(), T0 + 15))),
        relay.ingest(good, envelope(tse(run_id(), T0 + 45))),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert [r.to_dict()["accepted"] for r in (results[0], results[2])] == [1, 1]
    assert relay.record(bad)["runs"] == [] and relay.record(bad)["active_seconds"] == 0
    assert relay.outbox.depth() == 2


@pytest.mark.asyncio
async def test_a_batch_that_fails_fails_every_waiter_and_the_next_goes_on():
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int | Exception]:
        calls.append(items)
        if 13 in items:
            raise OSError("disk full")
        return [ValueError("odd") if i % 2 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, max_batch=3)
    results = await asyncio.gather(*(group.submit(i) for i in (2, 13, 4, 6, 7)),
                                   return_exceptions=True)  # fmt: skip
    # all five queued before the worker ran: batches of three, in order
    assert calls == [[2, 13, 4], [6, 7]]
    assert all(isinstance(r, OSError) for r in results[:3])
    assert results[3] == 60 and isinstance(results[4], ValueError)
    assert await group.submit(8) == 80  # the worker is started again for later items
