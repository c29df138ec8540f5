"""Drill: kill -9 of a real `jupyter server` in the middle of a session, again and again.

A stateful lesson is open with a kernel running cells, a browser tab reporting presence and
exercises being marked, while the server sends its events to the stand-in Timeback (which
answers each envelope a little late, so kills land mid-send too, and completes each envelope's
job later still, so kills land between send and confirmation). At a random instant the
server's whole process group gets SIGKILL; a new server starts on the same store and notebook.
At the end one more kill lands, for certain, between the completion's send and its job's
confirmation.

After every kill: every event seen committed before the kill is still there, in the same
order; every exercise the server answered 200 for is stored; the run in the notebook and in the
store is the same one (runIds continue); its windows never overlap. At the end: Timeback holds
every stored event exactly once, each run's in order, and exactly one completion.

`make test` runs a short form (3 kills); TIMEBACK_DRILLS=full (used by `make bench`) runs 20.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from timeback_jupyter.testing.standin import StandIn

from .conftest import LESSON, write_notebook
from .jupyter_process import STUDENT, TOKEN, JupyterProcess, Server, notebook_run, wait

FULL = os.environ.get("TIMEBACK_DRILLS") == "full"
KILLS = 20 if FULL else 3
CLIENT_ID, SECRET = "drill-client", "drill-secret"
SOURCED_ID = "drill-student-1"
SENSOR = "https://notebooks.example.edu"


def outbox(store: Path) -> list[tuple[str, str]]:
    """(event_id, run_id) of every committed outbox event, in seq order, read from outside."""
    if not store.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return list(db.execute("SELECT event_id, run_id FROM outbox ORDER BY seq"))


def store_rows(store: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return list(db.execute(sql))


class Session(threading.Thread):
    """A student at work: a kernel running cells, presence pings, exercises marked."""

    def __init__(self, server: Server, path: str, rng: random.Random, tag: int) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.rng, self.tag = server, path, rng, tag
        self.stop = threading.Event()
        self.acked_exercises: dict[str, bool] = {}
        self.run_id: str | None = None

    def run(self) -> None:
        with contextlib.suppress(Exception):  # the server dies under us: that is the point
            session = self.server.open(self.path)
            kernel = threading.Thread(target=self._cells, args=(session,), daemon=True)
            kernel.start()
            # A tab that reports presence is a browser that saves the run into the notebook
            # itself: until the server has written it (no browser yet), stay quiet.
            while notebook_run(self.server.root, self.path) is None and not self.stop.is_set():
                self.stop.wait(0.05)
            n = 0
            while not self.stop.is_set():
                r = self.server.http.post(
                    "/timeback/api/presence",
                    json={"path": self.path, "source": "tab-1", "visible": True,
                          "focused": True, "idle_ms": 100},
                )  # fmt: skip
                run = (r.json() or {}).get("run") if r.status_code == 200 else None
                if run:
                    self.run_id = run["id"]
                    exercise, correct = f"q{self.tag}-{n}", self.rng.random() < 0.7
                    r = self.server.http.post(
                        f"/timeback/api/runs/{run['id']}/exercises",
                        json={"exercise": exercise, "correct": correct},
                    )
                    if r.status_code == 200:
                        self.acked_exercises[exercise] = correct
                    n += 1
                self.stop.wait(0.15)

    def _cells(self, session: dict) -> None:
        with contextlib.suppress(Exception):
            client = BlockingKernelClient(
                connection_file=str(self.server.runtime / f"kernel-{session['kernel']['id']}.json")
            )
            client.load_connection_file()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=20)
                while not self.stop.is_set():
                    client.execute_interactive("import time; time.sleep(0.1)", timeout=3)
            finally:
                client.stop_channels()


JOB_DELAY = 0.4  # the stand-in's jobs complete this long after their envelope
JOB_TIMEOUT = 5.0  # so a send of unknown outcome is sent again only 5 s after its claim


@pytest.fixture
def standin():
    with StandIn(CLIENT_ID, SECRET, latency=0.15, job_delay=JOB_DELAY) as api:
        yield api


def pending_jobs(store: Path) -> list[tuple[str, str]]:
    """(event_id, kind) of every event waiting for a pending job of Timeback's."""
    return store_rows(
        store,
        "SELECT o.event_id, o.kind FROM outbox o JOIN jobs j ON o.job_id = j.job_id "
        "WHERE j.state = 'pending' AND o.status = 'inflight'",
    )


def start_server(tmp: Path, root: Path, store: Path, api: StandIn) -> Server:
    """A server on the drill's store; one more try if the first never came up.

    ``Server`` runs with ``port_retries=0``: when another process takes the chosen port first,
    the server exits instead of quietly moving to a port the drill could not find.
    """
    args = (
        "--Timeback.sink=timeback", f"--Timeback.base_url={api.url}",
        f"--Timeback.auth_url={api.token_url}", f"--Timeback.oneroster_base_url={api.url}",
        f"--Timeback.student_id={SOURCED_ID}", "--Timeback.retry_initial=0.05",
        "--Timeback.retry_max=0.5", "--Timeback.drain_interval=0.1",
        f"--Timeback.job_timeout={JOB_TIMEOUT}",
    )  # fmt: skip
    env = {"TIMEBACK_API_CLIENT_ID": CLIENT_ID, "TIMEBACK_API_CLIENT_SECRET": SECRET}
    try:
        return Server(tmp, root, store, *args, env=env)
    except AssertionError as first:
        reap(root)
        logs = sorted(tmp.glob("server-*.log"), key=lambda p: p.stat().st_mtime)
        tail = logs[-1].read_text()[-1500:] if logs else ""
        try:
            return Server(tmp, root, store, *args, env=env)
        except AssertionError as second:
            reap(root)
            raise AssertionError(f"no server came up: {first}; {second}; log: {tail}") from None


def reap(root: Path) -> None:
    """SIGKILL the process group of any server of ours still running on ``root``."""
    mark = f"--ServerApp.root_dir={root}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if mark in (proc / "cmdline").read_bytes().split(b"\0"):
                os.killpg(int(proc.name), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(600 if FULL else 200)
def test_kill_9_mid_session_loses_nothing_acknowledged(tmp_path: Path, standin: StandIn):
    root = tmp_path / "notebooks"
    root.mkdir()
    (root / "timeback.config.json").write_text(json.dumps({
        "name": "Notebook Academy", "sensor": SENSOR,
        "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
    }))  # fmt: skip
    store = tmp_path / "timeback.sqlite3"
    path = write_notebook(root, "lesson.ipynb", {"activity": LESSON})
    rng = random.Random(int(os.environ.get("TIMEBACK_DRILL_SEED", "20260127")))

    seen: list[tuple[str, str]] = []
    acked: dict[str, bool] = {}
    run_id = None
    mid_send = 0  # kills that left events Timeback had stored but we had not yet acked
    unconfirmed = 0  # kills that left jobs accepted by Timeback and not yet confirmed
    for kill in range(KILLS):
        server = start_server(tmp_path, root, store, standin)
        session = Session(server, path, rng, kill)
        try:
            session.start()
            if run_id is None:
                # The session is established once the server has put the run into the notebook.
                established = wait(lambda: notebook_run(root, path), what="the notebook's run")
                run_id = established["id"]
            time.sleep(rng.uniform(0.3, 4.0))
            before_kill = outbox(store)
        finally:
            server.kill()  # SIGKILL to the server and its kernels at once
            session.stop.set()
        session.join(10)
        after = outbox(store)
        assert after[: len(seen)] == seen, f"kill {kill}: a stored event was lost or reordered"
        assert after[: len(before_kill)] == before_kill, f"kill {kill}: lost a committed event"
        assert len({e for e, _ in after}) == len(after)
        seen = after
        acked.update(session.acked_exercises)
        assert session.run_id in (None, run_id), f"kill {kill}: a new run replaced {run_id}"
        assert notebook_run(root, path)["id"] == run_id
        inflight = {r[0] for r in store_rows(store, "SELECT event_id FROM outbox "
                                                    "WHERE status = 'inflight'")}  # fmt: skip
        mid_send += bool(inflight & set(standin.received_ids))
        unconfirmed += bool(pending_jobs(store))

    # Each run's windows: one run only, never overlapping (no second counted twice).
    runs = store_rows(store, "SELECT id, attempt, exercises FROM runs")
    assert [(r[0], r[1]) for r in runs] == [(run_id, 1)], "runIds did not continue"
    stored_exercises = json.loads(runs[0][2])
    assert {k: stored_exercises.get(k) for k in acked} == acked, "an acknowledged exercise is lost"
    windows = store_rows(store, f'SELECT start, "end" FROM windows WHERE run_id = \'{run_id}\' '
                                "ORDER BY start")  # fmt: skip
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start >= end - 1e-6, "two windows overlap: time counted twice"

    # A server resumes the run and completes it; Timeback accepts the completion but its job
    # takes a while; the server is killed before the job is confirmed. (No kernel this time:
    # with a notebook session still open after a completion, the server starts the next
    # attempt by itself, which is another drill's business.)
    standin.job_delay = 4.0
    server = start_server(tmp_path, root, store, standin)
    try:
        resumed = server.http.post("/timeback/api/runs", json={"path": path}).json()
        assert resumed["run"]["id"] == run_id and resumed["resumed"] is True
        done = server.http.post(f"/timeback/api/runs/{run_id}/complete", json={})
        assert done.status_code == 200, done.text
        waiting = wait(
            lambda: [e for e, kind in pending_jobs(store) if kind == "completion"],
            what="the completion accepted by Timeback, its job pending",
        )
    finally:
        server.kill()
    [completion_id] = waiting
    assert completion_id not in standin.received_ids  # its job has not completed yet
    assert [e for e, _ in pending_jobs(store)].count(completion_id) == 1
    standin.job_delay = JOB_DELAY

    # The last server follows the job the killed one recorded, delivers everything, stops.
    server = start_server(tmp_path, root, store, standin)
    try:
        flushed = server.http.post("/timeback/api/flush", json={"timeout": 30}).json()
        assert flushed["report"]["remaining"] == 0, flushed
        jobs = flushed["delivery"]["jobs"]
        assert (jobs["pending"], jobs["events_awaiting"]) == (0, 0), jobs
    finally:
        server.stop()

    stored = outbox(store)
    received = standin.received_ids
    counts = Counter(received)
    assert [i for i, n in counts.items() if n > 1] == [], "an event reached Timeback twice"
    assert set(counts) == {e for e, _ in stored}, "an event never reached Timeback"
    for run in {r for _, r in stored}:
        mine = [e for e, r in stored if r == run]
        assert [i for i in received if i in set(mine)] == mine, (
            "a run's events arrived out of order"
        )
    completions = [e for e in standin.received if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    assert {e["extensions"]["runId"] for e in standin.received} == {run_id}
    assert pending_jobs(store) == []
    print(
        f"DRILL {KILLS + 1} kills, {len(stored)} events, {mid_send} kill(s) between send and "
        f"ack, {unconfirmed + 1} between a job's acceptance and its confirmation"
    )


class LongWindowServer(Server):
    """The drill's server with real 15 s windows: its short ones close before a checkpoint
    matters."""

    def __init__(self, tmp: Path, root: Path, store: Path) -> None:
        self.store = store
        args = [
            f"--Timeback.store_path={store}",
            f"--Timeback.student_email={STUDENT}",
            "--Timeback.heartbeat_interval=15",
            "--Timeback.metadata_write_delay=0.2",
        ]
        JupyterProcess.__init__(self, tmp, root, "jupyter_server", TOKEN, args, None)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_loses_at_most_the_time_since_the_last_checkpoint(tmp_path: Path):
    """The open window is checkpointed every ``checkpoint_interval`` (2 s): after a kill -9 the
    next server records it, so the run keeps what the clock had counted up to about 2 s before
    the kill, and never more than it counted."""
    root = tmp_path / "notebooks"
    root.mkdir()
    (root / "timeback.config.json").write_text(json.dumps({
        "name": "Notebook Academy", "sensor": SENSOR,
        "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
    }))  # fmt: skip
    store = tmp_path / "timeback.sqlite3"
    path = write_notebook(root, "lesson.ipynb", {"activity": LESSON})
    server = LongWindowServer(tmp_path, root, store)
    session = Session(server, path, random.Random(7), 0)
    try:
        session.start()
        run_id = wait(lambda: notebook_run(root, path), what="the notebook's run")["id"]
        time.sleep(6.0)  # the student at work (cells, presence): into a window's middle
        counted = server.http.get(f"/timeback/api/runs/{run_id}").json()["run"]["active_seconds"]
        sampled = time.time()
        checkpoints = store_rows(store, "SELECT saved_at FROM open_windows")
    finally:
        server.kill()
        killed = time.time()
        session.stop.set()
    session.join(10)
    assert checkpoints, "no checkpoint of the open window before the kill"
    last_checkpoint = max(saved_at for (saved_at,) in checkpoints)
    before = store_rows(store, f"SELECT active_seconds FROM runs WHERE id = '{run_id}'")[0][0]

    server = LongWindowServer(tmp_path, root, store)  # no kernel, no tab: nothing new
    try:
        wait(lambda: not store_rows(store, "SELECT 1 FROM open_windows"), what="the recovery")
    finally:
        server.stop()
    recovered = store_rows(store, f"SELECT active_seconds FROM runs WHERE id = '{run_id}'")[0][0]
    lost = counted - recovered
    print(
        f"KILL CHECKPOINT counted {counted:.2f} s, recovered {recovered:.2f} s (closed windows "
        f"alone: {before:.2f} s): lost {lost:.2f} s; last checkpoint "
        f"{sampled - last_checkpoint:.2f} s before the sample, kill {killed - sampled:.3f} s after"
    )
    assert recovered > before, "the checkpointed open window was not recovered"
    # Never more than the clock had counted by the kill...
    assert recovered <= counted + (killed - sampled) + 0.05
    # ...and nothing lost but the time since the last checkpoint: about 2 s (the interval; the
    # slack is the event loop's lag on a loaded machine, not the design).
    assert lost <= (sampled - last_checkpoint) + 0.25
    assert lost <= 2.0 + 2.5
