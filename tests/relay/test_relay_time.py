"""Random windows from several servers of one user, in random envelopes and order: the active
seconds the relay forwards over any interval never exceed its length (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timeback_jupyter.relay.schema import active_spans
from timeback_jupyter.relay.spans import free_gaps, place

from .conftest import ADA, BOB, T0, Clock, envelope, forwarded, make_relay, run_id, tse

window = st.tuples(
    st.integers(0, 3),  # which server (run) of the user
    st.integers(0, 240_000),  # end, ms after T0
    st.integers(0, 15_000),  # active ms
    st.integers(0, 15_000),  # inactive ms
).filter(lambda w: w[2] + w[3] <= 15_000)


def _active(event) -> float:
    return next(i["value"] for i in event["generated"]["items"] if i["type"] == "active")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    windows=st.lists(window, min_size=1, max_size=30),
    chunk=st.integers(1, 7),
    probes=st.lists(st.tuples(st.integers(-20_000, 260_000), st.integers(0, 60_000)), max_size=20),
)
@pytest.mark.asyncio
async def test_forwarded_active_time_never_exceeds_wall_time(relay_db_url, windows, chunk, probes):
    relay = make_relay(relay_db_url.empty(), Clock(T0 + 10_000))
    try:
        runs = [run_id() for _ in range(4)]
        events = [
            tse(runs[s], T0 + end / 1000, active / 1000, inactive / 1000)
            for s, end, active, inactive in windows
        ]
        answers = []
        for i in range(0, len(events), chunk):
            answers += (await relay.ingest(ADA, envelope(*events[i : i + chunk]))).events
        with relay.db.read() as conn:
            spans = sorted(
                (r.start_ms, r.end_ms) for r in conn.execute(sa.select(active_spans)).all()
            )
        # never two spans of the user over the same millisecond
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start
        # over any interval, forwarded active <= its length
        for lo_off, length in probes:
            lo = round(T0 * 1000) + lo_off
            hi = lo + length
            covered = sum(max(0, min(e, hi) - max(s, lo)) for s, e in spans)
            assert covered <= length
        # what was sent = what was placed + what was cut, and the outbox says the same
        sent_active = sum(a for _, _, a, _ in windows)
        cut = sum(round(a["cut_seconds"] * 1000) for a in answers)
        placed = sum(e - s for s, e in spans)
        assert placed + cut == sent_active
        assert round(sum(_active(e) for e in forwarded(relay)) * 1000) == placed
        assert round(relay.record(ADA)["active_seconds"] * 1000) == placed
    finally:
        relay.db.close()


@pytest.mark.asyncio
async def test_each_user_has_their_own_wall_clock(relay):
    same = [tse(run_id(), T0 + 15, 15, 0) for _ in range(3)]
    await relay.ingest(ADA, envelope(same[0]))
    await relay.ingest(BOB, envelope(same[1]))
    answer = (await relay.ingest(ADA, envelope(same[2]))).to_dict()
    assert answer["events"][0]["cut_seconds"] == 15
    assert relay.record(BOB)["active_seconds"] == 15


def test_placement_fills_free_time_latest_first():
    assert free_gaps([(2, 4), (6, 8)], 0, 10) == [(0, 2), (4, 6), (8, 10)]
    assert free_gaps([(0, 10)], 2, 5) == []
    assert place([(6, 8)], 0, 10, 5) == [(3, 6), (8, 10)]
    assert place([], 0, 10, 20) == [(0, 10)]
    assert place([(0, 10)], 0, 10, 5) == []
    assert place([], 5, 5, 3) == []


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(
        st.tuples(st.sampled_from(["ada", "bob"]), st.lists(st.integers(0, 9), min_size=1,
                  max_size=4), st.booleans()),
        min_size=1, max_size=12,
    )
)  # fmt: skip
@pytest.mark.asyncio
async def test_replays_in_any_order_are_duplicates_and_other_bodies_refused(relay_db_url, plan):
    """Envelopes of events 0-9 sent and resent in any mix by two users, some bodies changed."""
    from timeback_jupyter.relay.users import HubUser

    relay = make_relay(relay_db_url.empty(), Clock(T0 + 10_000))
    try:
        run = run_id()
        base = {
            i: tse(run, T0 + 15 * (i + 1), event_id=f"urn:uuid:{i:08d}-0000-4000-8000-000000000000")
            for i in range(10)
        }
        first: dict[tuple[str, int], str] = {}
        for user, picks, changed in plan:
            events = [
                tse(run, T0 + 15 * (i + 1), 5, 1, event_id=base[i]["id"]) if changed else base[i]
                for i in picks
            ]
            answer = await relay.ingest(HubUser(user), envelope(*events))
            for i, event, got in zip(picks, events, answer.events, strict=True):
                body = "changed" if changed else "base"
                if (user, i) not in first:
                    assert got["status"] == "accepted"
                    first[(user, i)] = body
                elif first[(user, i)] == body:
                    assert got["status"] == "duplicate"
                else:
                    assert got["status"] == "refused" and "conflicts" in got["reason"]
                assert got["id"] == event["id"]
        ids = [e["id"] for e in forwarded(relay)]
        assert len(ids) == len(set(ids)) == len(first)
    finally:
        relay.db.close()
