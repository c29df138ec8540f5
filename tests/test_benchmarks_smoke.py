"""The benchmarks' run paths, in seconds: every module imports, the envelopes the load generators
post are what the official models accept, and both generators (``district_load`` as the district
benchmark starts it, ``relay_cpu_load`` as the relaycpu benchmark drives it) run for ~2 s against
a real relay (``jupyter timeback relay`` behind a real JupyterHub, delivering to the stand-in)
and count what the relay took. A generator rewrite that breaks a benchmark (it once broke
relaycpu's imports unnoticed) fails here, not in the next long measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks import district_plan as plan
from benchmarks.__main__ import BENCHMARKS
from benchmarks.district import start_generators, wait_ready
from benchmarks.district_envelopes import Maker, Student, request_head
from benchmarks.relay_cpu_load import Load
from timeback_jupyter.testing.standin import StandIn
from timeback_jupyter.testing.standin.validation import validate_envelope

from .relay.hub import (
    CLIENT_ID,
    CLIENT_SECRET,
    PREFIX,
    SCOPE,
    Hub,
    RelayProcess,
    free_port,
    wait_until,
)

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
MODULES = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem != "__init__")
PATH = f"{PREFIX}api/events"


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__name__ == f"benchmarks.{name}"


def test_every_registered_benchmark_has_a_run() -> None:
    assert "district" in BENCHMARKS and "relaycpu" in BENCHMARKS
    assert all(callable(run) for run in BENCHMARKS.values())


def test_generator_cpu_tool_runs_a_paced_job(monkeypatch) -> None:
    """``district_loadcpu`` (the generator against answer-only servers) for 1.5 s at pace 30."""
    from benchmarks import district_loadcpu

    for name, value in (("LOADCPU_RATE", "20"), ("LOADCPU_SECONDS", "1.5"), ("LOADCPU_PACE", "30")):
        monkeypatch.setenv(name, value)
    out = district_loadcpu.main([])
    assert out["errors"] == 0 and out["late"] == 0 and out["windows_per_envelope"] == 2
    # two windows an envelope, and now and then a run's completion with them
    assert out["envelopes"] > 0 and 2 * out["envelopes"] <= out["events"] < 3 * out["envelopes"]


def _body(request: bytes) -> dict:
    head, body = request.split(b"\r\n\r\n", 1)
    assert int(head.rsplit(b"Content-Length: ", 1)[1]) == len(body)
    return json.loads(body)


def test_a_paced_envelope_holds_consecutive_windows_each_valid() -> None:
    maker = Maker(15.0, 8, windows=4)
    s = Student("d00001", "tok", 0, 0.0, 0.0, head=request_head(PATH, "tok"))
    at = 1_800_000_000.0
    first, n1 = maker.request(s, at)
    second, n2 = maker.request(s, at + 60)
    assert (n1, n2) == (4, 5)  # the 8th window's envelope carries the run's completion
    one, two = _body(first), _body(second)
    assert validate_envelope(one) == [] and validate_envelope(two) == []
    assert [e["type"] for e in two["data"]] == ["TimeSpentEvent"] * 4 + ["ActivityEvent"]
    # consecutive 15 s windows, the last ending when sent (1_800_000_000 is 08:00:00 UTC)
    assert [e["eventTime"] for e in one["data"]] == [
        "2027-01-15T07:59:15.000Z", "2027-01-15T07:59:30.000Z",
        "2027-01-15T07:59:45.000Z", "2027-01-15T08:00:00.000Z",
    ]  # fmt: skip
    assert two["data"][-1]["eventTime"] == "2027-01-15T08:01:00.000Z"
    events = one["data"] + two["data"]
    assert len({e["id"] for e in events}) == 9
    assert len({e["extensions"]["runId"] for e in events}) == 1
    assert s.run == ""  # completed: the next envelope starts a new run
    for event in one["data"]:
        items = {i["type"]: i["value"] for i in event["generated"]["items"]}
        assert items == {"active": 12.0, "inactive": 3.0}


def test_pace_must_be_whole_windows() -> None:
    assert plan.paces("15,60") == [15, 60]
    for bad in ("20", "0", "-15", "fast"):
        with pytest.raises(ValueError, match="multiple of 15 seconds"):
            plan.paces(bad)


# ---- both load generators against a real hub and relay ------------------------------------

N = 6  # students per generator's test


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """A hub, a relay (SQLite) delivering to the stand-in, and 2 x N students with tokens."""
    names = [f"smoke{i}" for i in range(2 * N)]
    with StandIn(CLIENT_ID, CLIENT_SECRET) as standin:
        for name in names:
            standin.users[f"{name}@school.edu"] = [f"sourced-{name}"]
        hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
        relay = RelayProcess(tmp_path_factory.mktemp("relay"), hub, standin)
        # the relay and the hub start together (the hub waits for its service's URL anyway)
        starting = threading.Thread(target=relay.start, kwargs={"via_hub": False})
        try:
            starting.start()
            hub.start()
            starting.join()
            assert relay.proc is not None and relay.proc.poll() is None, relay.log_text()
            tokens = []
            for name in names:
                hub.create_user(name)
                tokens.append(hub.token(name, [SCOPE]))
            yield standin, relay, list(zip(names, tokens, strict=True))
        finally:
            relay.stop()
            hub.stop()


def _delivered(standin: StandIn, kind: str, want: int) -> int:
    """How many events of ``kind`` the relay forwarded to the stand-in (waiting up to 30 s for
    ``want`` of them)."""
    count = 0

    def enough() -> bool:
        nonlocal count
        count = sum(1 for e in standin.received if e["type"] == kind)
        return count >= want

    with contextlib.suppress(AssertionError):  # the count below says what was missing
        wait_until(enough, f"{want} {kind}s at the stand-in", timeout=30)
    return count


@pytest.mark.slow
def test_district_generator_posts_paced_envelopes_the_relay_takes(district, tmp_path) -> None:
    standin, relay, students = district
    received = len(standin.received)
    mine = [(name, tok, 0, (i + 0.5) / N, 0.0) for i, (name, tok) in enumerate(students[:N])]
    # pace 30: two 0.5 s windows per envelope, one envelope a second per student, for 2 s; a
    # completion with every 4th window (the second envelope of each student)
    phases = [
        {"name": "first", "group": "first", "pace": None, "interval": 15.0, "window": 15.0,
         "windows": 1, "seconds": 0.0, "share": 1.0, "closed": True, "start": 0.0,
         "drain": 3.0},
        {"name": "district", "group": "pace30", "pace": 30, "interval": 1.0, "window": 0.5,
         "windows": 2, "seconds": 2.0, "share": 1.0, "start": 0.0, "drain": 3.0},
    ]  # fmt: skip
    gens = start_generators(tmp_path, [relay.port], PATH, mine, phases, connections=4,
                            generators=2, completion_every=4)  # fmt: skip
    try:
        wait_ready(tmp_path, "pace30", gens, 60.0)
        plan.write_schedule(tmp_path, "pace30", phases, time.time() + 1.0)
        outs = []
        for proc, out in gens:
            assert proc.wait(timeout=60) == 0
            outs.append(json.loads(out.read_text()))
    finally:
        for proc, _ in gens:
            if proc.poll() is None:
                proc.kill()
    first = [o["phases"][0] for o in outs]
    paced = [o["phases"][1] for o in outs]
    for record in first + paced:
        assert record["errors"] == [] and record["refused"] == 0 and record["late_tasks"] == 0
    assert sum(r["events"] for r in first) == N
    assert sum(len(r["latency"]) for r in paced) == 2 * N  # two envelopes per student
    assert sum(r["events"] for r in paced) == 2 * N * 2 + N  # their windows, a completion each
    assert all(lat >= 0 for r in paced for lat in r["latency"])
    # what the generators counted is what the relay took and forwarded
    assert _delivered(standin, "TimeSpentEvent", received + 5 * N) - received == 5 * N
    assert _delivered(standin, "ActivityEvent", N) == N


@pytest.mark.slow
def test_relay_cpu_generator_counts_what_the_relay_took(district) -> None:
    _, relay, students = district
    load = Load(relay.port, PATH, students[N:])
    warm = asyncio.run(load.closed(2, None, time.time() - 3600))
    assert (warm["envelopes"], warm["events"], warm["errors"]) == (N, N, 0), warm
    back = asyncio.run(load.closed(2, 1.0, time.time() - 1800))
    assert back["errors"] == 0 and back["envelopes"] >= 4, back
    assert back["events"] >= back["envelopes"] and back["p99_ms"] >= back["p50_ms"] > 0
    low = asyncio.run(load.open_loop(6.0, 1.0))
    assert (low["envelopes"], low["errors"]) == (6, 0), low
    assert sum(s.beats for s in load.students) >= warm["envelopes"] + back["envelopes"] + 6


def test_relay_cpu_paced_envelopes_follow_each_other() -> None:
    """RELAY_CPU_WINDOWS: an envelope of 4 windows ending 15 s apart, the next envelope's
    first window 15 s after the last (none overlaps: the relay cuts nothing of them)."""
    load = Load(1, PATH, [("ada", "token")], windows=4)
    s, base, ends = load.students[0], 1_800_000_000.0, []
    for _ in range(3):
        request, n = load.request(s, load.next_end(s, base))
        assert n == 4
        body = json.loads(request.split(b"\r\n\r\n", 1)[1])
        ends += [datetime.fromisoformat(e["eventTime"]).timestamp() for e in body["data"]]
    assert ends == [base + 15.0 * (k + 1) for k in range(12)]


def test_warm_wal_leaves_segments_ready_for_reuse(postgres_server) -> None:
    """The district benchmark's PostgreSQL starts with WAL segments to recycle, so its commits
    never wait for a new one's zero-filling (benchmarks/district.py WARM_WAL_SEGMENTS)."""
    from benchmarks.district import warm_wal

    ahead = (
        "SELECT count(*) FROM pg_ls_waldir() "
        "WHERE name > pg_walfile_name(pg_current_wal_lsn()) AND name ~ '^[0-9A-F]{24}$'"
    )
    with postgres_server.admin() as conn:
        before = conn.execute(ahead).fetchone()[0]
    warm_wal(postgres_server, 4)
    with postgres_server.admin() as conn:
        after = conn.execute(ahead).fetchone()[0]
        assert conn.execute("SELECT to_regclass('warm_wal')").fetchone()[0] is None
    assert after >= max(4, before), (before, after)
