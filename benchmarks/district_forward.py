"""The forwarder's CPU per event, apart from the ingest: `python -m benchmarks.district_forward`.

The relay's parts as `jupyter timeback relay` builds them (``relay.app.build_parts``: the
official client, the shared token, the drainer) on a real PostgreSQL, delivering to the
stand-in Timeback in its own process (asynchronous jobs, every event validated with the
official models). The outbox is filled first through the relay's own ingest (students'
heartbeats, a completion every 40th), then drained with no ingest meanwhile; the process's
CPU over the drain, divided by the events confirmed, is the forwarder's price per event
(claim, envelope, send, job record, job polls, confirm). PostgreSQL's and the stand-in's CPU
over the same drain are given beside it.

``--replicas 2`` drains with two relay processes' worth of parts in this one process (each its
own replica key and drainer), as two replicas share one database. ``--profile FILE`` writes
cProfile's statistics (CPU time) of the drain. Environment: FORWARD_EVENTS (default 6000),
FORWARD_BATCH (c.Timeback.batch_size, default 50). The first 200 events are delivered
unmeasured (the SDK's imports, the token, the connection pools).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .common import ROOT, say
from .district_parts import cpu_of, pg_pids, start_standin

STUDENTS = 200
WARM_UP = 200
# The sink's requests counted (send_stored: the relay's envelopes, posted as stored).
_REQUESTS = ("send", "send_stored", "job_status", "exists")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _events(n: int, t0: float) -> list[tuple[str, dict[str, Any]]]:
    """``n`` (student, envelope) pairs in the district's shape, as a student's server posts."""
    sys.path.insert(0, str(ROOT))
    from tests.relay.conftest import completion, envelope, tse

    out = []
    runs = {s: str(uuid.uuid4()) for s in range(STUDENTS)}
    for k in range(n):
        s = k % STUDENTS
        beat = k // STUDENTS
        end = t0 + 15.0 * (beat + 1)
        if beat and beat % 40 == 0:
            out.append((f"d{s:05d}", envelope(completion(runs[s], end - 1))))
            runs[s] = str(uuid.uuid4())
        else:
            out.append((f"d{s:05d}", envelope(tse(runs[s], end))))
    return out


def _parts(db_url: str, standin: str, tmp: Path) -> Any:
    from tests.relay.hub import CATALOG, CLIENT_ID, CLIENT_SECRET
    from timeback_jupyter.config import Timeback
    from timeback_jupyter.relay.app import build_parts
    from timeback_jupyter.relay.settings import Relay as RelaySettings
    from timeback_jupyter.testing.standin import TOKEN_PATH

    catalog = tmp / "timeback.config.json"
    catalog.write_text(json.dumps(CATALOG))
    settings = RelaySettings(
        catalog=str(catalog), email_template="{name}@school.edu", db_url=db_url, sink="timeback"
    )
    timeback = Timeback(
        base_url=standin,
        auth_url=standin + TOKEN_PATH,
        oneroster_base_url=standin,
        batch_size=int(os.environ.get("FORWARD_BATCH", 50)),
    )
    environ = {"TIMEBACK_CLIENT_ID": CLIENT_ID, "TIMEBACK_CLIENT_SECRET": CLIENT_SECRET}
    return build_parts(settings, timeback, environ)


async def _fill(parts: Any, events: list[tuple[str, dict[str, Any]]]) -> float:
    from timeback_jupyter.relay.users import HubUser

    parts.relay.notify = None  # filling only: the drain starts after
    began = time.perf_counter()
    for i in range(0, len(events), 100):
        chunk = events[i : i + 100]
        await asyncio.gather(*(parts.relay.ingest(HubUser(u), e) for u, e in chunk))
    return time.perf_counter() - began


def _count(parts: Any, counts: dict[str, int]) -> None:
    """Count the sink's requests (sends, job polls, lookups) as they pass."""
    sink = parts.sink
    for name in _REQUESTS:
        inner = getattr(sink, name)

        async def counted(*a: Any, _inner: Any = inner, _name: str = name) -> Any:
            counts[_name] = counts.get(_name, 0) + 1
            return await _inner(*a)

        setattr(sink, name, counted)


async def _drain(all_parts: list[Any], n: int, profile: str | None) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for parts in all_parts:
        _count(parts, counts)
    prof = cProfile.Profile(time.process_time) if profile else None  # CPU, not waits
    cpu0, wall0 = _cpu(), time.perf_counter()
    if prof:
        prof.enable()
    reports = await asyncio.gather(*(p.drainer.flush(timeout=900) for p in all_parts))
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    sent = sum(r.sent for r in reports)
    stats = all_parts[0].relay.outbox.stats()
    jobs = all_parts[0].relay.outbox.job_stats()
    for parts in all_parts:
        for name in _REQUESTS:
            vars(parts.sink).pop(name, None)
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "sent": sent,
        "requests": counts,
        "outbox": stats,
        "jobs": jobs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.district_forward")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(ROOT))
    from timeback_jupyter.testing.postgres import PostgresServer, find_bindir

    n = int(os.environ.get("FORWARD_EVENTS", 6000))
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL is not installed (apt-get install postgresql)"
    with tempfile.TemporaryDirectory(prefix="tb-bench-forward-") as tmp_name:
        tmp = Path(tmp_name)
        server = PostgresServer(bindir).start()
        standin, url = start_standin(tmp, STUDENTS)
        try:
            db_url = server.create_database("forward")
            all_parts = [_parts(db_url, url, tmp) for _ in range(args.replicas)]
            loop = asyncio.new_event_loop()
            try:
                # A first 200 delivered unmeasured: the SDK's imports, the token, the pools
                events = _events(n + WARM_UP, time.time() - 86400)
                loop.run_until_complete(_fill(all_parts[0], events[:WARM_UP]))
                loop.run_until_complete(_drain(all_parts, WARM_UP, None))
                say(f"forward: filling the outbox with {n} events")
                filled = loop.run_until_complete(_fill(all_parts[0], events[WARM_UP:]))
                say(f"forward: filled in {filled:.1f} s; draining with {args.replicas} replica(s)")
                groups = {"postgres": pg_pids(server), "standin": [standin.pid]}
                before = cpu_of(groups)
                out = loop.run_until_complete(_drain(all_parts, n, args.profile))
                after = cpu_of(groups)
                for parts in all_parts:
                    loop.run_until_complete(parts.aclose())
            finally:
                loop.close()
        finally:
            standin.terminate()
            standin.wait(10)
            server.stop()
    sent = max(out["sent"], 1)
    out.update(
        events=n,
        replicas=args.replicas,
        relay_us_per_event=out["cpu_s"] / sent * 1e6,
        postgres_us_per_event=(after["postgres"] - before["postgres"]) / sent * 1e6,
        standin_us_per_event=(after["standin"] - before["standin"]) / sent * 1e6,
        events_per_s=sent / out["wall_s"],
        load=os.getloadavg()[0],
    )
    print(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
