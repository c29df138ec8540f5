"""The relay's own probes in its metrics: each group commit's size, wall time, queue wait and
thread CPU, and the event loop's lag (how late a timer fires), on each backend."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from traitlets import TraitError

from timeback_jupyter.relay.metrics import RelayMetrics
from timeback_jupyter.relay.settings import Relay as RelaySettings
from timeback_jupyter.relay.users import HubUser

from .conftest import T0, envelope, run_id, tse


@pytest.mark.asyncio
async def test_group_commits_are_counted_timed_and_sized(relay):
    metrics = RelayMetrics(relay.db, relay.now)
    seen = []  # each batch as the group commit reports it, beside what the metrics make of it

    def observe(timing):
        seen.append(timing)
        metrics.group_commit(timing)

    relay.observe_commits(observe)

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    answers = await asyncio.gather(
        *(relay.ingest(HubUser(f"s{i}"), envelope(tse(run_id(), T0 + 15))) for i in range(12))
    )
    assert all(a.count("accepted") == 1 for a in answers)
    assert max(t.size for t in seen) > 1  # they shared transactions
    batches = value("timeback_relay_group_commit_envelopes_count")
    assert batches == len(seen)
    assert value("timeback_relay_group_commit_envelopes_sum") == 12  # each in exactly one
    assert value("timeback_relay_group_commit_duration_seconds_count") == len(seen)
    assert value("timeback_relay_group_commit_duration_seconds_sum") == pytest.approx(
        sum(t.wall for t in seen)
    )
    assert value("timeback_relay_group_commit_wait_seconds_count") == len(seen)
    assert value("timeback_relay_group_commit_cpu_seconds_total") == pytest.approx(
        sum(t.cpu for t in seen)
    )
    assert sum(t.cpu for t in seen) > 0
    relay.observe_commits(None)  # no observer: nothing more counted
    await relay.ingest(HubUser("late"), envelope(tse(run_id(), T0 + 15)))
    assert value("timeback_relay_group_commit_envelopes_sum") == 12


@pytest.mark.asyncio
async def test_the_loop_probe_sees_a_blocked_loop(relay):
    metrics = RelayMetrics(relay.db, relay.now)
    probe = asyncio.create_task(metrics.probe_loop(every=0.01))

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    try:
        await asyncio.sleep(0.1)  # a few quiet wakes
        quiet = value("timeback_relay_event_loop_lag_seconds_count")
        time.sleep(0.3)  # the loop held, as a long callback would hold it
        await asyncio.sleep(0.05)
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
    count = value("timeback_relay_event_loop_lag_seconds_count")
    assert quiet >= 1 and count > quiet
    within = value("timeback_relay_event_loop_lag_seconds_bucket", le="0.25")
    assert count - within >= 1  # the wake after the hold was over 0.25 s late
    assert value("timeback_relay_event_loop_lag_seconds_sum") >= 0.25


def test_commit_lanes_are_bounded():
    assert RelaySettings().commit_lanes == 1
    for bad in (0, 33):
        with pytest.raises(TraitError, match=r"c\.Relay\.commit_lanes must be 1 to 32"):
            RelaySettings(commit_lanes=bad)


@pytest.mark.asyncio
async def test_the_collectors_pauses_are_timed_by_generation(relay):
    """A full collection over many tracked objects is a pause every thread of the replica
    waits out; the probe reports each one, by generation, and stops watching when it stops."""
    metrics = RelayMetrics(relay.db, relay.now)
    probe = asyncio.create_task(metrics.probe_loop(every=0.01))

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    heap = [[i] for i in range(300_000)]  # tracked containers for the collector to walk
    try:
        await asyncio.sleep(0.03)
        before = value("timeback_relay_gc_pause_seconds_count", generation="2")
        summed = value("timeback_relay_gc_pause_seconds_sum", generation="2")
        began = time.perf_counter()
        gc.collect(2)
        took = time.perf_counter() - began
        await asyncio.sleep(0.05)
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
    assert len(heap) == 300_000
    assert value("timeback_relay_gc_pause_seconds_count", generation="2") == before + 1
    timed = value("timeback_relay_gc_pause_seconds_sum", generation="2") - summed
    assert 0 < timed <= took + 0.01
    assert metrics._gc_callback not in gc.callbacks  # the probe's end unhooks it
