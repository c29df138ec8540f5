"""Through a real hub: one student's two named servers, each with its own clock, get no more
active time forwarded than the wall clock allows."""

from __future__ import annotations

import pwd
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.hub_student import StudentServer
from timeback_jupyter.testing.standin import StandIn

from .relayed import STORE, delivered, for_runs

pytestmark = pytest.mark.slow

BUSY = 25  # seconds a cell runs in each server at once: active time in both clocks


def claimed(user: pwd.struct_passwd, run_ids: list[str]) -> float:
    """The active seconds the student's servers recorded for ``run_ids`` (their own clocks)."""
    # each named server keeps its own store beside the default one (timeback-<name>.sqlite3)
    total = 0.0
    marks = ",".join("?" * len(run_ids))
    query = f"SELECT COALESCE(SUM(active), 0) FROM windows WHERE run_id IN ({marks})"
    for store in sorted((Path(user.pw_dir) / STORE).parent.glob("timeback*.sqlite3")):
        with sqlite3.connect(store) as db:
            total += float(db.execute(query, run_ids).fetchone()[0])
    return total


def test_two_named_servers_at_once_get_no_double_time(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], quiz_for: Any
) -> None:
    servers = [hub.spawn("tb-alice"), hub.spawn("tb-alice", "second")]
    opened: list[tuple[StudentServer, str, Any]] = []
    try:
        began = time.time()
        for server, folder in zip(servers, ("named-one", "named-two"), strict=True):
            path = quiz_for("tb-alice", folder)
            session_id, kernel = server.open(path)
            opened.append((server, session_id, kernel))
            kernel.execute("%load_ext timeback_jupyter")
        run_ids = [server.run_id(p) for server, p in zip(servers, ("named-one/fractions-quiz.ipynb",
                   "named-two/fractions-quiz.ipynb"), strict=True)]  # fmt: skip
        assert all(run_ids), run_ids
        threads = [
            threading.Thread(target=kernel.execute, args=(f"import time; time.sleep({BUSY})", 120))
            for _, _, kernel in opened
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for server, session_id, kernel in opened:
            server.close(session_id, kernel)
        ended = time.time()
    # One home, a store per named server (each its own owner): both deliver, the relay cuts.
    delivered(hub, *servers, flush=False)
    hub.stop_server("tb-alice", "second")
    ids = [r for r in run_ids if r]
    spent = [e for e in for_runs(hub_standin, ids) if e["type"] == "TimeSpentEvent"]
    forwarded = sum(
        i["value"] for e in spent for i in e["generated"]["items"] if i["type"] == "active"
    )
    own = claimed(hub_students["tb-alice"], ids)
    assert own >= 2 * BUSY - 2  # each server counted the busy cell
    assert forwarded <= ended - began + 1  # never more than the wall clock
    me = hub.relay_api("GET", "api/me", token=hub.token_for("tb-alice")).json()
    cut = sum(r["cut_seconds"] for r in me["runs"] if r["run_id"] in ids)
    assert cut >= BUSY - 5 and forwarded + cut == pytest.approx(own, abs=1), (forwarded, cut, own)
