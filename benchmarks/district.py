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

Phases, one after the other: (first) every student's first envelope, as fast as the relays
answer with a bounded number in flight: the hub's token lookup, the relay's OneRoster lookup and
the user's row; (ramp) steps of 30 s (20 quick) from 5% to 75% of the district's rate: the
ceiling is the last step whose p99 stays under 100 ms; (district) the district's rate, 1,333
envelopes/s, for 90 s (60 quick). ``DISTRICT_STUDENTS`` sets the population (20,000; 2,000
quick): a smaller one offers the same rates by posting more often (its windows shorter).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .common import ROOT, Result, cpu_seconds, say
from .district_hub import CACHE, hub_dir, hub_students, stop_proxy
from .district_report import summarize

STUDENTS = 20_000
INTERVAL = 15.0
COMPLETION_EVERY = 40  # a 10-minute activity: its completion rides with every 40th heartbeat
TARGET_P99_MS = 100.0
GENERATORS = 2
CONNECTIONS = 48  # per replica per generator
AUTH_CACHE = 1800  # longer than the run: the first lookups are their own phase
# Events per envelope to Timeback at most (c.Timeback.batch_size): a claim takes what is
# pending up to this, so batches grow only when the outbox is deep.
RELAY_BATCH = 200
# The ramp climbs before the district phase: once a step overloads the relays, the requests
# they still hold (cut off, counted) spoil every later step.
RAMP = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75)
LEAD = 5.0
FIRST_CAP = 900.0  # seconds: a hub this slow gives no figure worth waiting for
GAP = 3.0  # between phases: answers due at a phase's end land in it; later ones are cut off

STANDIN = """
import sys
from timeback_jupyter.testing.standin import StandIn
with StandIn(sys.argv[1], sys.argv[2]) as api:
    for name in open(sys.argv[3]).read().split():
        api.users[f"{name}@school.edu"] = [f"sourced-{name}"]
    print(api.url, flush=True)
    sys.stdin.read()
"""


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
    f"A completion rides with every {COMPLETION_EVERY}th heartbeat of a student (a "
    "10-minute activity), with a new run after it.",
    "CPU shares are each group's user+system time over the phase (relays: both "
    "replicas; postgres: the postmaster and its children; generators: both "
    "processes), as a share of one core; the machine has two, shared with other "
    "work (the load average above).",
]


def pg_pids(server: Any) -> list[int]:
    """The cluster's processes: the postmaster (first line of postmaster.pid) and its children."""
    try:
        top = int((server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [top]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fp:
                    if int(fp.read().rsplit(")", 1)[1].split()[1]) == top:
                        pids.append(int(entry))
            except (OSError, ValueError):
                continue
    return pids


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    out = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            try:
                total += cpu_seconds(pid)
            except OSError:
                continue
        out[name] = total
    return out


class Lag(threading.Thread):
    """The outbox's depth and oldest pending age, read from PostgreSQL every 2 s."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.stopping = url, [], threading.Event()

    def run(self) -> None:
        import psycopg

        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not self.stopping.wait(2.0):
                row = conn.execute(
                    "SELECT count(*), min(created_at) FROM outbox "
                    "WHERE status IN ('pending', 'inflight')"
                ).fetchone()
                now = time.time()
                age = 0.0 if row is None or row[1] is None else max(0.0, now - row[1])
                self.samples.append((now, int(row[0]) if row else 0, age))


def _relay(i: int, port: int, hub: Any, standin_url: str, db_url: str, tmp: Path) -> Any:
    from tests.relay.hub import (
        BIN,
        CATALOG,
        CLIENT_ID,
        CLIENT_SECRET,
        PREFIX,
        RELAY_HUB_TOKEN,
        SERVICE,
    )
    from timeback_jupyter.testing.standin import TOKEN_PATH

    catalog = tmp / "timeback.config.json"
    catalog.write_text(json.dumps(CATALOG))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBACK_", "JUPYTERHUB_"))}
    env.update(
        TIMEBACK_CLIENT_ID=CLIENT_ID, TIMEBACK_CLIENT_SECRET=CLIENT_SECRET,
        JUPYTERHUB_API_TOKEN=RELAY_HUB_TOKEN, JUPYTERHUB_API_URL=hub.api_url,
        JUPYTERHUB_SERVICE_NAME=SERVICE, JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_SERVICE_PREFIX=PREFIX, JUPYTER_CONFIG_DIR=str(tmp / f"config{i}"),
    )  # fmt: skip
    # DISTRICT_PROFILE=1: the first replica runs under cProfile (its profile in .cache/district/)
    profile = ["-m", "cProfile", "-o", str(CACHE / "relay0.prof")]
    head = (
        [sys.executable, *profile, str(BIN / "jupyter-timeback")]
        if (i == 0 and os.environ.get("DISTRICT_PROFILE"))
        else [str(BIN / "jupyter"), "timeback"]
    )
    command = [
        *head, "relay", f"--Relay.catalog={catalog}",
        "--Relay.email_template={name}@school.edu", f"--Relay.db_url={db_url}",
        "--Relay.sink=timeback", f"--Relay.auth_cache_seconds={AUTH_CACHE}",
        f"--Timeback.base_url={standin_url}", f"--Timeback.auth_url={standin_url}{TOKEN_PATH}",
        f"--Timeback.oneroster_base_url={standin_url}", f"--Timeback.batch_size={RELAY_BATCH}",
    ]  # fmt: skip
    log = open(tmp / f"relay{i}.log", "w")  # noqa: SIM115  (the child holds it)
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    log.close()
    return proc


def _rate(n: int, m: float) -> tuple[float, float]:
    """(share of the students, interval) that offers ``m`` times the district's envelope rate
    (STUDENTS every INTERVAL): fewer students at 15 s below what ``n`` give, else all of them
    more often (a population smaller than the district's sends more often to offer its rate)."""
    wanted = m * STUDENTS / INTERVAL
    if wanted <= n / INTERVAL:
        return wanted * INTERVAL / n, INTERVAL
    return 1.0, n / wanted


def _phases(quick: bool, n: int) -> list[dict[str, Any]]:
    district_s = 60.0 if quick else 90.0
    step_s = 20.0 if quick else 30.0
    out: list[dict[str, Any]] = [
        {"name": "first", "interval": INTERVAL, "seconds": 0.0, "share": 1.0, "closed": True},
    ]
    for m in (*RAMP, 1.0):
        share, interval = _rate(n, m)
        name, seconds = (f"ramp x{m:g}", step_s) if m != 1.0 else ("district", district_s)
        out.append({"name": name, "interval": interval, "seconds": seconds, "share": share,
                    "multiplier": m})  # fmt: skip
    for phase in out:
        phase["offered_envelopes_per_s"] = phase["share"] * n / phase["interval"]
        phase["events_per_envelope"] = 1 + (phase["name"] != "first") / COMPLETION_EVERY
    return out


def run(quick: bool = False) -> Result:
    sys.path.insert(0, str(ROOT))
    import httpx

    from tests.relay.hub import CLIENT_ID, CLIENT_SECRET, PREFIX, SCOPE, Hub, free_port, wait_until
    from timeback_jupyter.testing.postgres import PostgresServer, find_bindir

    n = int(os.environ.get("DISTRICT_STUDENTS", 2_000 if quick else STUDENTS))
    CACHE.mkdir(parents=True, exist_ok=True)
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL is not installed (apt-get install postgresql)"
    procs: list[subprocess.Popen[Any]] = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-district-") as tmp_name:
        tmp = Path(tmp_name)
        server = PostgresServer(bindir).start()
        lag: Lag | None = None
        hub = Hub(hub_dir(n), free_port())
        try:
            db_url = server.create_database("district")
            names_file = tmp / "names.txt"
            names_file.write_text("\n".join(f"d{i:05d}" for i in range(n)))
            standin = subprocess.Popen(
                [sys.executable, "-c", STANDIN, CLIENT_ID, CLIENT_SECRET, str(names_file)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(standin)
            assert standin.stdout is not None
            standin_url = standin.stdout.readline().strip()
            ports = [hub.relay_port, free_port()]
            relays = [_relay(i, p, hub, standin_url, db_url, tmp) for i, p in enumerate(ports)]
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
            phases = _phases(quick, n)
            for phase in phases:
                phase["start"] = 0.0  # the first: now; the others: once the first is done
                phase["drain"] = GAP  # later answers are cut off, counted with their wait
            gens = []
            for g in range(GENERATORS):
                job = {"replicas": [["127.0.0.1", p] for p in ports],
                       "path": f"{PREFIX}api/events", "connections_per_replica": CONNECTIONS,
                       "completion_every": COMPLETION_EVERY, "phases": phases,
                       "students": students[g::GENERATORS], "sync_dir": str(tmp),
                       "generator": g}  # fmt: skip
                job_path, out_path = tmp / f"job{g}.json", tmp / f"out{g}.json"
                job_path.write_text(json.dumps(job))
                gens.append((subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.district_load", str(job_path),
                     str(out_path)], cwd=ROOT), out_path))  # fmt: skip
            pids["generators"] = [p.pid for p, _ in gens]
            procs.extend(p for p, _ in gens)
            lag = Lag(db_url)
            lag.start()
            say(
                f"district: phase first (every student's first envelope, {CONNECTIONS} in "
                "flight per replica per generator)"
            )
            cpu_marks = [(time.time(), cpu_of(pids))]
            first_began = time.time()
            while not all((tmp / f"first-done-{g}").exists() for g in range(GENERATORS)):
                if any(p.poll() is not None for p, _ in gens):
                    raise RuntimeError("a load generator stopped during the first phase")
                if time.time() - first_began > FIRST_CAP:
                    raise RuntimeError(f"the first lookups took over {FIRST_CAP:g} s: given up")
                time.sleep(0.2)
            cpu_marks.append((time.time(), cpu_of(pids)))
            phases[0]["start"], phases[0]["seconds"] = first_began, time.time() - first_began
            start = time.time() + LEAD
            for phase in phases[1:]:
                phase["start"] = start
                start += phase["seconds"] + phase["drain"] + 1.0
            (tmp / "schedule.json.part").write_text(json.dumps([p["start"] for p in phases[1:]]))
            (tmp / "schedule.json.part").rename(tmp / "schedule.json")
            for phase in phases[1:]:
                time.sleep(max(0.0, phase["start"] - time.time()))
                say(f"district: phase {phase['name']} ({phase['seconds']:g} s)")
                cpu_marks.append((time.time(), cpu_of(pids)))
                time.sleep(max(0.0, phase["start"] + phase["seconds"] - time.time()))
                cpu_marks.append((time.time(), cpu_of(pids)))
            outs = []
            for proc, out_path in gens:
                proc.wait(timeout=600)
                outs.append(json.loads(out_path.read_text()))
            time.sleep(4.0)  # the outbox's tail, for the lag series
            lag.stopping.set()
            lag.join(10)
            for r in relays:
                log = (tmp / f"relay{relays.index(r)}.log").read_text(errors="replace")
                (CACHE / f"relay{relays.index(r)}.log.tail").write_text(log[-20000:])
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
    metrics = summarize(phases, outs, cpu_marks, lag.samples if lag else [], made_s)
    district = metrics["phases"]["district"]
    passed = (
        district["p99_ms"] < TARGET_P99_MS
        and district["errors"] == 0
        and district["unanswered"] == 0
        and (district["events_per_s"] >= 0.97 * district["offered_events_per_s"])
    )
    return Result(
        name="district",
        title="District scale: 20,000 students' load, two relay replicas, PostgreSQL",
        command="python -m benchmarks district",
        target=f"the district load ({STUDENTS:,} students, one heartbeat per {INTERVAL:g} s "
        f"each: {STUDENTS / INTERVAL:,.0f} envelopes/s) sustained with ingest p99 < "
        f"{TARGET_P99_MS:g} ms",
        passed=passed,
        quick=quick,
        params={
            "students": n,
            "interval_s": INTERVAL,
            "completion_every": COMPLETION_EVERY,
            "replicas": 2,
            "generators": GENERATORS,
            "connections": CONNECTIONS,
            "auth_cache_seconds": AUTH_CACHE,
            "relay_batch_size": RELAY_BATCH,
            "phases": [{k: v for k, v in p.items() if k != "start"} for p in phases],
        },
        metrics=metrics,
        notes=NOTES,
    )
