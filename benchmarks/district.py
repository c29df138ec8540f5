"""District scale: 20,000 students' heartbeats into two relay replicas on one PostgreSQL.

All real, on this machine's two cores at once: a PostgreSQL cluster (testing/postgres.py, fsync
on), two ``jupyter timeback relay`` processes on it delivering to the stand-in Timeback (its own
process, validating every event with the official models), a JupyterHub whose 20,000 users each
hold a server-like token that every relay checks with HubAuth, and a load generator
(:mod:`.district_load`) in two processes of its own posting straight to the replicas' ports
(as a Kubernetes Service in front of relay pods would; through configurable-http-proxy every
envelope would cost the proxy ~1 ms of CPU more, see "Relay ingest"). Each student is pinned to
one replica (its token is looked up by one relay, not two).

The hub's users and tokens are made once, with JupyterHub's own ORM (:mod:`.district_hub`),
and kept under ``.cache/district/`` with the hub's database, so a later run starts in
seconds; the relay's HubAuth cache is set longer than the run (``c.Relay.auth_cache_seconds``),
and every token's first lookup is a phase of its own.

Phases, one after the other (:mod:`.district_plan`): (first) every student's first envelope,
as fast as the relays answer with a bounded number in flight: the hub's token lookup, the
relay's OneRoster lookup and the user's row; then for each pace (``DISTRICT_PACE``: 15, or
``15,60`` for both, side by side; a paced server sends pace / 15 windows per envelope) the
ramp, steps of 30 s (20 quick) from 5% to 75% of the district's 1,333 heartbeats/s: the
ceiling is the last step whose p99 stays under 100 ms; and (district) the district's rate for
90 s (60 quick). Between paces the outbox is drained first. ``DISTRICT_STUDENTS`` sets the
population (20,000; 2,000 quick): a smaller one offers the same rates by posting more often
(its windows shorter). ``DISTRICT_SECONDS`` and ``DISTRICT_RAMP`` shorten a run (a smoke);
``DISTRICT_RELAY_ARGS`` adds options to both relays' command lines.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import district_plan as plan
from .common import ROOT, Result, say
from .district_hub import CACHE, hub_dir, hub_students, stop_proxy
from .district_parts import Lag, cpu_of, pg_pids, start_relay, start_standin
from .district_plan import COMPLETION_EVERY, INTERVAL, STUDENTS
from .district_probe import PgActivity, outbox_timings, relay_delta, scrape
from .district_report import summarize

TARGET_P99_MS = 100.0
GENERATORS = 2
CONNECTIONS = 48  # per replica per generator
AUTH_CACHE = 1800  # longer than the run: the first lookups are their own phase
# Events per envelope to Timeback at most (c.Timeback.batch_size): a claim takes what is
# pending up to this, so batches grow only when the outbox is deep.
RELAY_BATCH = 200
LEAD = 5.0
FIRST_CAP = 900.0  # seconds: a hub this slow gives no figure worth waiting for
RUN_ONLY = ("start", "cpu", "scrapes")  # a phase's keys of this run, not its parameters
SETTLE_CAP = 180.0  # seconds: between paces, the outbox drained (or given up waiting for)
# PostgreSQL as docs/jupyterhub.md tells a district to set it (its defaults are for a small
# server: 128 MB of buffers, a checkpoint per GB of WAL); fsync and synchronous_commit stay on.
PG_SETTINGS = {"shared_buffers": "2GB", "max_wal_size": "8GB", "min_wal_size": "4GB",
               "checkpoint_timeout": "15min"}  # fmt: skip
# WAL segments made ready before the load, as a server that has run before has them: a fresh
# cluster creates (zero-fills, fsyncs) each 16 MB segment under the WAL write lock while every
# commit waits (measured: COMMITs of 150-190 ms in IO:WALInitWrite / WALInitSync, about one
# per 5 s at the district's rate). A checkpoint keeps them for reuse up to min_wal_size.
WARM_WAL_SEGMENTS = 200


NOTES = [
    "Where the relay's milliseconds went, profiled before this benchmark (cProfile, the "
    "relay's core in-process on PostgreSQL, 1,350 heartbeats of 400 students, CPU time): "
    "~7 ms of relay CPU and ~2.4 ms of PostgreSQL CPU per event, nearly all of it a dozen "
    "statements per event (lock, seen, run, spans, two time updates, span, outbox, "
    "received, two savepoints). With the batch's rows read in four set-based statements "
    "and each table written once (relay/state.py): ~0.9-1.2 ms relay and ~0.3-0.5 ms "
    "PostgreSQL per event (load average 12-20 meanwhile). Waking the forwarder once per "
    "0.25 s of commits instead of per commit removed a whole delivery per event at low "
    "rates (the first runs: ~8 ms relay CPU per event at 27 envelopes/s).",
    "Latency is counted by the load generator from when an envelope was due (open loop: "
    "an envelope that waits for a free connection is late by that wait) to its answer, "
    "which the relay gives after the envelope's commit on PostgreSQL (fsync on).",
    "PostgreSQL runs with the settings docs/jupyterhub.md gives a district ("
    + ", ".join(f"{k} = {v}" for k, v in PG_SETTINGS.items())
    + "; fsync and synchronous_commit on): with its defaults (128 MB of buffers) the "
    "backends wrote most dirty pages out themselves at this load (pg_stat_bgwriter).",
    "Before the load, PostgreSQL is given WAL segments to reuse (warm_wal: "
    "WARM_WAL_SEGMENTS switches, then a checkpoint, kept by min_wal_size), as a server that "
    "has run before has them: on a fresh cluster each new 16 MB segment was zero-filled and "
    "synced under the WAL write lock while every commit waited, COMMITs of 150-190 ms about "
    "every 5 s at the district's rate (the ingest's p99 185 ms against 87 ms with them ready).",
    "Each student is pinned to one replica and posts to it directly, as servers would "
    "behind a Kubernetes Service; the hub's proxy is not on the path (through it each "
    "envelope costs configurable-http-proxy ~1 ms of CPU more: 'Relay ingest').",
    f"HubAuth's cache is {AUTH_CACHE} s here (c.Relay.auth_cache_seconds), longer than "
    "the run: every token's lookup is in the first phase, measured on its own.",
    "Each replica forwards its own claims (FOR UPDATE SKIP LOCKED, stamped with the "
    "replica's advisory lock: relay/replicas.py), its store calls on the drainer's "
    "thread, not the event loop.",
    f"The relays forward up to {RELAY_BATCH} events per envelope (c.Timeback.batch_size; "
    "a claim takes what is pending up to that, so batches grow only with the backlog): "
    "measured apart (benchmarks/district_forward.py, real PostgreSQL and stand-in), a "
    "batch of 200 costs the relay ~230 us and PostgreSQL ~170 us of CPU per event against "
    "~400 and ~290 us in batches of 50.",
    f"A completion rides with the envelope holding a student's {COMPLETION_EVERY}th "
    "window (a 10-minute activity), with a new run after it.",
    "Paced servers (DISTRICT_PACE): a server told a pace by the relay sends its pending "
    "heartbeats together, one envelope every pace seconds (pace / 15 windows, each its own "
    "TimeSpentEvent), so the relays take students / pace requests a second for the same "
    "events; the first envelope of each student is a single window (a server sends its "
    "first before it knows the pace). Per-request figures (latency, CPU per request) are "
    "per envelope.",
    "Probes per paced phase (benchmarks/district_probe.py): each replica's Prometheus "
    "metrics scraped at the phase's ends (group commits' size, wall, queue wait and thread "
    "CPU; event-loop lag), pg_stat_activity sampled every 100 ms, and the outbox's events "
    "made in the phase read back at the end (created -> claimed -> confirmed).",
    "CPU shares are each group's user+system time over the phase (relays: both "
    "replicas; postgres: the postmaster and its children, looked up again at each phase's "
    "ends so the backends of connections opened meanwhile count; generators: both "
    "processes), as a share of one core; the machine has two, shared with other "
    "work (the load average above).",
]


def start_generators(
    tmp: Path, ports: list[int], path: str, students: list[Any], phases: list[dict[str, Any]],
    connections: int = CONNECTIONS, generators: int = GENERATORS,
    completion_every: int = COMPLETION_EVERY,
) -> list[tuple[subprocess.Popen[bytes], Path]]:  # fmt: skip
    """The load generators (``python -m benchmarks.district_load``), each with its share of
    the students, all with the same phases; each writes its records to the returned path."""
    gens = []
    for g in range(generators):
        job = {"replicas": [["127.0.0.1", p] for p in ports], "path": path,
               "connections_per_replica": connections, "completion_every": completion_every,
               "phases": phases, "students": students[g::generators], "sync_dir": str(tmp),
               "generator": g}  # fmt: skip
        job_path, out_path = tmp / f"job{g}.json", tmp / f"out{g}.json"
        job_path.write_text(json.dumps(job))
        command = [sys.executable, "-m", "benchmarks.district_load", str(job_path), str(out_path)]
        gens.append((subprocess.Popen(command, cwd=ROOT), out_path))
    return gens


def wait_ready(tmp: Path, group: str, gens: list[Any], cap: float) -> None:
    began = time.time()
    while not plan.ready(tmp, group, len(gens)):
        if any(p.poll() is not None for p, _ in gens):
            raise RuntimeError(f"a load generator stopped before {group}")
        if time.time() - began > cap:
            raise RuntimeError(f"the generators were not ready for {group} in {cap:g} s")
        time.sleep(0.2)


def _drive(
    tmp: Path, phases: list[dict[str, Any]], gens: list[Any], pids: Any, lag: Lag,
    look: Any = lambda: [],
) -> None:  # fmt: skip
    """The first phase, then each pace's phases on the clock, CPU (and ``look()``: the
    relays' metrics) read at each phase's ends."""
    first = phases[0]
    first["start"] = time.time()
    first["cpu"] = [(first["start"], cpu_of(pids))]
    for index, group in enumerate(plan.groups(phases)):
        wait_ready(tmp, group, gens, FIRST_CAP if index == 0 else 120.0)
        if index == 0:
            first["cpu"].append((time.time(), cpu_of(pids)))
            first["seconds"] = time.time() - first["start"]
        else:
            began = time.time()
            say(f"district: {group}: waiting for the outbox to drain first")
            while not lag.drained(began) and time.time() - began < SETTLE_CAP:
                time.sleep(1.0)
        plan.write_schedule(tmp, group, phases, time.time() + LEAD)
        for phase in (p for p in phases if p["group"] == group):
            time.sleep(max(0.0, phase["start"] - time.time()))
            say(f"district: {group} {phase['name']} ({phase['seconds']:g} s)")
            phase["scrapes"] = [look()]  # first: it also finds PostgreSQL's new backends
            phase["cpu"] = [(time.time(), cpu_of(pids))]
            time.sleep(max(0.0, phase["start"] + phase["seconds"] - time.time()))
            phase["scrapes"].append(look())
            phase["cpu"].append((time.time(), cpu_of(pids)))


def _probes(phases: list[dict[str, Any]], activity: PgActivity, db_url: str) -> dict[str, Any]:
    """Per paced phase: PostgreSQL's waits, each relay's group commits and loop lag, and its
    outbox events' waits for claim and confirmation (:mod:`.district_probe`)."""
    paced = [p for p in phases if p.get("pace") is not None and "scrapes" in p]
    key = {id(p): f"pace{p['pace']} {p['name']}" for p in paced}
    windows = {key[id(p)]: (p["start"], p["start"] + p["seconds"]) for p in paced}
    outbox = outbox_timings(db_url, windows)
    return {
        key[id(p)]: {
            "postgres": activity.summary(*windows[key[id(p)]]),
            "relays": [relay_delta(b, a) for b, a in zip(*p["scrapes"], strict=True)],
            "outbox": outbox[key[id(p)]],
        }
        for p in paced
    }


def warm_wal(server: Any, segments: int) -> None:
    """Leave ``segments`` WAL segments recycled, ready for reuse (see WARM_WAL_SEGMENTS);
    ``server`` a started testing.postgres.PostgresServer."""
    with server.admin("postgres") as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE IF NOT EXISTS warm_wal (n int)")  # logged: a temp one is not
        for _ in range(segments):
            conn.execute("INSERT INTO warm_wal VALUES (1)")  # a switch needs WAL since the last
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("DROP TABLE warm_wal")
        conn.execute("CHECKPOINT")


def run(quick: bool = False) -> Result:
    sys.path.insert(0, str(ROOT))
    import httpx

    from tests.relay.hub import PREFIX, SCOPE, Hub, free_port, wait_until
    from timeback_jupyter.testing.postgres import PostgresServer, find_bindir

    n = int(os.environ.get("DISTRICT_STUDENTS", 2_000 if quick else STUDENTS))
    pace_list = plan.paces()
    # e.g. "--Relay.send_every=60": the pace the relays tell servers (a run of one pace)
    relay_args = shlex.split(os.environ.get("DISTRICT_RELAY_ARGS", ""))
    phases = plan.phases(quick, n, pace_list)
    CACHE.mkdir(parents=True, exist_ok=True)
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL is not installed (apt-get install postgresql)"
    procs: list[subprocess.Popen[Any]] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-district-") as tmp_name:
        tmp = Path(tmp_name)
        server = PostgresServer(bindir, PG_SETTINGS).start()
        lag: Lag | None = None
        hub = Hub(hub_dir(n), free_port())
        try:
            db_url = server.create_database("district")
            warm_wal(server, WARM_WAL_SEGMENTS)
            standin, standin_url = start_standin(tmp, n)
            procs.append(standin)
            ports = [hub.relay_port, free_port()]
            options = (f"--Relay.auth_cache_seconds={AUTH_CACHE}",
                       f"--Timeback.batch_size={RELAY_BATCH}",
                       "--Relay.authenticate_prometheus=False", *relay_args)  # fmt: skip
            relays = [
                start_relay(i, p, hub, standin_url, db_url, tmp, *options)
                for i, p in enumerate(ports)
            ]
            procs.extend(relays)
            for p in ports:
                health = f"http://127.0.0.1:{p}{PREFIX}api/health"
                wait_until(lambda u=health: httpx.get(u, timeout=5).status_code == 200, "a relay")
            hub.start()
            say(f"district: hub up; {n} students and tokens (cached in {CACHE})")
            names, tokens, made_s = hub_students(hub, n, SCOPE)
            rng = random.Random(17)
            pairs = enumerate(zip(names, tokens, strict=True))
            students = [(name, tok, i % 2, rng.random(), i / n) for i, (name, tok) in pairs]
            rng.shuffle(students)
            assert hub.proc is not None
            pids = {
                "relays": [r.pid for r in relays], "postgres": pg_pids(server),
                "hub": [hub.proc.pid], "standin": [standin.pid],
            }  # fmt: skip
            for phase in phases:
                phase["start"] = 0.0  # the first: now; the others: scheduled by _drive
            gens = start_generators(tmp, ports, f"{PREFIX}api/events", students, phases)
            pids["generators"] = [p.pid for p, _ in gens]
            procs.extend(p for p, _ in gens)
            lag = Lag(db_url)
            lag.start()
            activity = PgActivity(db_url)
            activity.start()
            say(
                f"district: phase first (every student's first envelope, {CONNECTIONS} in "
                f"flight per replica per generator); then paces {pace_list} s"
            )

            def look() -> list[dict[str, Any]]:
                # The backends of connections opened since (a pool's overflow, a lane's), so
                # their CPU counts; one gone meanwhile is lost with its share.
                pids["postgres"] = pg_pids(server)
                return [scrape(p, PREFIX) for p in ports]

            _drive(tmp, phases, gens, pids, lag, look)
            outs = []
            for proc, out_path in gens:
                proc.wait(timeout=600)
                outs.append(json.loads(out_path.read_text()))
            time.sleep(4.0)  # the outbox's tail, for the lag series
            lag.stopping.set()
            lag.join(10)
            activity.stopping.set()
            activity.join(10)
            probes = _probes(phases, activity, db_url)
            for i in range(len(relays)):
                log = (tmp / f"relay{i}.log").read_text(errors="replace")
                (CACHE / f"relay{i}.log.tail").write_text(log[-20000:])
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            hub.stop()
            stop_proxy(hub.tmp)
            shutil.rmtree(hub.tmp, ignore_errors=True)
            server.stop()
    metrics = summarize(phases, outs, lag.samples if lag else [], made_s)
    metrics["probes"] = probes
    passed_at = [
        pace for pace, m in metrics["paces"].items()
        if (d := m["phases"]["district"])["p99_ms"] < TARGET_P99_MS and d["errors"] == 0
        and d["unanswered"] == 0 and d["events_per_s"] >= 0.97 * d["offered_events_per_s"]
    ]  # fmt: skip
    metrics["target_met_at_paces"] = passed_at
    return Result(
        name="district",
        title="District scale: 20,000 students' load, two relay replicas, PostgreSQL",
        command=(f"DISTRICT_PACE={','.join(map(str, pace_list))} " if pace_list != [15] else "")
        + "python -m benchmarks district",
        target=f"the district's load ({STUDENTS:,} students, a heartbeat window per "
        f"{INTERVAL:g} s each: {STUDENTS / INTERVAL:,.0f} events/s, plus completions) "
        f"sustained with ingest p99 < {TARGET_P99_MS:g} ms per request, at a pace the relay "
        "sets (servers sending one envelope per pace: 15 s is one per heartbeat)",
        passed=bool(passed_at),
        quick=quick,
        params={
            "students": n,
            "paces_s": pace_list,
            "interval_s": INTERVAL,
            "completion_every": COMPLETION_EVERY,
            "replicas": 2,
            "generators": GENERATORS,
            "connections": CONNECTIONS,
            "auth_cache_seconds": AUTH_CACHE,
            "relay_batch_size": RELAY_BATCH,
            "relay_args": relay_args,
            "phases": [{k: v for k, v in p.items() if k not in RUN_ONLY} for p in phases],
        },
        metrics=metrics,
        notes=NOTES,
    )
