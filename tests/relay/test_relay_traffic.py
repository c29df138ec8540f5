"""The successful ingests' summary line (relay/traffic.py): what it counts, when it is written,
and that it says nothing but counts and times."""

from __future__ import annotations

import asyncio
import logging
import math
import random

import pytest

from timeback_jupyter.relay.traffic import MAX_SAMPLES, IngestTraffic, percentile

LOGGER = "timeback_jupyter.relay.test-traffic"


def summaries(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def test_percentile_is_the_nearest_rank():
    values = sorted(random.Random(7).uniform(0, 1) for _ in range(1001))
    for q in (1, 50, 99, 100):
        rank = math.ceil(q / 100 * len(values))
        assert percentile(values, q) == values[rank - 1]
        assert sum(v <= percentile(values, q) for v in values) >= q / 100 * len(values)
    assert percentile([], 99) == 0.0 and percentile([0.5], 50) == 0.5


@pytest.mark.asyncio
async def test_one_line_per_interval_sums_the_requests_events_and_latencies(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    traffic = IngestTraffic(logging.getLogger(LOGGER), "POST", "/s/r/api/events", interval=0.2)
    durations = [0.001 * (i + 1) for i in range(100)]  # 1..100 ms
    for i, seconds in enumerate(durations):
        traffic.add(seconds, {"accepted": 1, "duplicate": i % 2, "refused": 0})
    assert summaries(caplog) == []  # nothing per request
    await asyncio.sleep(0.5)
    (line,) = summaries(caplog)
    assert line.levelno == logging.INFO
    assert (line.requests, line.events) == (100, 150)
    assert (line.accepted, line.duplicate, line.refused) == (100, 50, 0)
    assert (line.p50_ms, line.p99_ms) == (50.0, 99.0)
    assert (line.method, line.path, line.status) == ("POST", "/s/r/api/events", 200)
    assert 0.1 <= line.interval_s <= 0.5
    assert line.getMessage().startswith(
        "200 POST /s/r/api/events: 100 requests, 150 events (100 accepted, 50 duplicate, "
        "0 refused) in "
    )
    # A quiet interval writes nothing; the next request starts the next one.
    await asyncio.sleep(0.3)
    assert len(summaries(caplog)) == 1
    traffic.add(0.004, {"accepted": 2, "duplicate": 0, "refused": 0})
    await asyncio.sleep(0.4)
    second = summaries(caplog)[1]
    assert (second.requests, second.events, second.p50_ms, second.p99_ms) == (1, 2, 4.0, 4.0)


@pytest.mark.asyncio
async def test_flush_writes_what_is_left_at_once_and_only_once(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    traffic = IngestTraffic(logging.getLogger(LOGGER), "POST", "/api/events", interval=60)
    traffic.add(0.002, {"accepted": 1, "duplicate": 0, "refused": 1})
    traffic.flush()  # the relay stopping
    traffic.flush()
    (line,) = summaries(caplog)
    assert (line.requests, line.events, line.refused) == (1, 2, 1)


@pytest.mark.asyncio
async def test_the_latencies_kept_are_bounded(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    traffic = IngestTraffic(logging.getLogger(LOGGER), "POST", "/api/events", interval=60)
    for i in range(3 * MAX_SAMPLES):
        traffic.add(0.001 * (i % 10), {"accepted": 1})
    assert len(traffic.durations) < MAX_SAMPLES
    traffic.flush()
    (line,) = summaries(caplog)
    assert line.requests == 3 * MAX_SAMPLES and line.p99_ms == 9.0


def test_a_nonpositive_interval_is_refused():
    with pytest.raises(ValueError, match="interval must be positive"):
        IngestTraffic(logging.getLogger(LOGGER), "POST", "/p", interval=0)
