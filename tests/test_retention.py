"""Retention and bounded reads: confirmed heartbeat events are pruned after the kept period,
a batch at a time, while runs, windows and completions stay; every event is read a page at a
time. Real SQLite throughout, time injected."""

import io
import json
import sqlite3
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest
from traitlets import TraitError

from timeback_jupyter.config import Timeback
from timeback_jupyter.model import Activity, Completion, CourseRef, InvalidInput, Run, Window
from timeback_jupyter.store import DAY, SCHEMA_VERSION, Store, StoreError, migrations
from timeback_jupyter.store.retention import PRUNE_SQL

SENSOR = "https://notebooks.example.edu"
ACTIVITY = Activity("fractions-1", "Fractions 1", CourseRef("Math", 3), stateful=True)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def new_run() -> Run:
    return Run(id=str(uuid.uuid4()), activity=ACTIVITY, student="abc123", attempt=1, started_at=0.0)


def event(n: int | str = 0, pad: int = 0) -> dict:
    return {"id": f"urn:uuid:{uuid.uuid4()}", "type": "TimeSpentEvent", "n": n, "pad": "x" * pad}


def record(store: Store, run: Run, start: float, active: float = 15.0) -> dict:
    e = event(start)
    store.record_windows([(Window(run.id, start, start + 15, active, 15 - active), e, SENSOR)])
    return e


def deliver(store: Store) -> None:
    while batch := store.claim_batch(100):
        store.ack([i.event_id for i in batch])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with Store(tmp_path / "t.sqlite3", now=clock) as s:
        yield s


def test_only_confirmed_heartbeats_older_than_the_period_go_and_the_report_stays(store, clock):
    run = new_run()
    store.insert_run(run)
    old = [record(store, run, 15.0 * i) for i in range(4)]
    deliver(store)  # sent at t0
    completion = {"id": f"urn:uuid:{uuid.uuid4()}", "type": "ActivityEvent"}
    store.record_completion(Completion(run.id, 1.0, at=60.0), completion, SENSOR)
    deliver(store)  # the completion's event is confirmed too, and old enough below
    clock.t += 10 * DAY
    fresh = record(store, run, 60.0)
    deliver(store)  # sent ten days later
    pending = record(store, run, 75.0)
    inflight = record(store, run, 90.0)
    store.claim_batch(1)  # 'pending' goes inflight
    store.dead_letter([pending["id"]], "bad")  # ...and is set aside
    store.release([], "")
    assert inflight["id"] in {i.event_id for i in store.claim_batch(1)}
    windows, totals = store.windows(run.id), store.get_run(run.id)

    assert store.prune_sent(clock.t - 5 * DAY) == 4  # the four old heartbeats
    assert store.prune_sent(clock.t - 5 * DAY) == 0
    remaining = [e["id"] for e in store.events()]
    assert remaining == [completion["id"], fresh["id"], inflight["id"]]
    assert [d.event_id for d in store.dead_letters()] == [pending["id"]]
    # The report's data: every window, the run's totals and its completion, unchanged.
    assert store.windows(run.id) == windows and store.get_run(run.id) == totals
    assert store.get_completion(run.id) == completion  # the answer to a repeat is still there
    assert old[0]["id"] not in remaining


def test_pruning_goes_oldest_first_a_batch_at_a_time(store, clock):
    run = new_run()
    store.insert_run(run)
    events = []
    for i in range(7):
        events.append(record(store, run, 15.0 * i))
        deliver(store)
        clock.t += 1
    assert store.prune_sent(clock.t, limit=3) == 3
    assert [e["id"] for e in store.events()] == [e["id"] for e in events[3:]]
    assert store.prune_sent(clock.t - 2.5, limit=100) == 2  # sent before t - 2.5 only
    assert [e["id"] for e in store.events()] == [e["id"] for e in events[5:]]
    with pytest.raises(InvalidInput, match="limit"):
        store.prune_sent(clock.t, limit=0)


def test_pruning_finds_its_rows_by_the_partial_index(store):
    plan = " ".join(
        str(row[-1]) for row in store._db.execute("EXPLAIN QUERY PLAN " + PRUNE_SQL, (5.0, 10))
    )
    assert "USING INDEX outbox_prunable" in plan and "TEMP B-TREE" not in plan, plan


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_store_thread_prunes_a_backlog_in_batches_and_stops_with_the_store(tmp_path, clock):
    path = tmp_path / "t.sqlite3"
    store = Store(path, now=clock)
    run = new_run()
    store.insert_run(run)
    for i in range(450):  # more than two batches
        record(store, run, 15.0 * i)
    deliver(store)
    clock.t += 31 * DAY
    record(store, run, 15.0 * 1000)  # queued, never pruned
    store.retain(30 * DAY, every=0.05)
    wait_for(lambda: store.stats()["sent"] == 0, "the backlog to be pruned")
    pruner = store._pruner
    assert pruner is not None and pruner.pruned == 450 and pruner.is_alive()
    assert store.depth() == 1 and len(store.windows(run.id)) == 451
    store.close()
    assert not pruner.is_alive()


def test_zero_keeps_every_event_and_bad_periods_are_refused(store, clock):
    store.retain(0)
    assert store._pruner is None
    with pytest.raises(InvalidInput, match="keep_seconds"):
        store.retain(-1)
    with pytest.raises(TraitError, match="retention_days"):
        Timeback(retention_days=-1)
    with pytest.raises(TraitError, match="checkpoint_interval"):
        Timeback(checkpoint_interval=0.1)
    assert Timeback().retention_days == 30.0 and Timeback().checkpoint_interval == 2.0


def test_events_are_read_a_page_at_a_time(store):
    for i in range(10):
        store.enqueue(event(i), run_id=None, kind="x", sensor=SENSOR)
    assert [e["n"] for e in store.events(page=3)] == list(range(10))
    reading = store.events(page=2)
    assert next(reading)["n"] == 0
    # Paged, not a snapshot: what is added meanwhile past the page read comes too.
    store.enqueue(event(10), run_id=None, kind="x", sensor=SENSOR)
    assert [e["n"] for e in reading] == list(range(1, 11))
    batch = store.claim_batch(4)
    store.ack([i.event_id for i in batch[:2]])
    assert [e["n"] for e in store.events(status="sent", page=1)] == [0, 1]
    assert [e["n"] for e in store.events(status="inflight", page=1)] == [2, 3]
    with pytest.raises(InvalidInput, match="page"):
        store.events(page=0)
    for i in range(5):
        store.enqueue(event(f"d{i}"), run_id=None, kind="x", sensor=SENSOR)
    store.dead_letter([e["id"] for e in store.events() if str(e["n"]).startswith("d")], "bad")
    assert [d.payload["n"] for d in store.iter_dead_letters(page=2)] == [f"d{i}" for i in range(5)]


def test_export_streams_in_pages_with_little_memory(store):
    # 2,000 events of 2 kB: 4 MB of payloads; the export holds a page of them at a time.
    for i in range(2000):
        store.enqueue(event(i, pad=2000), run_id=None, kind="x", sensor=SENSOR)
    store.dead_letter([next(store.events())["id"]], "bad")

    class Counting(io.TextIOBase):
        lines = 0

        def write(self, text: str) -> int:
            self.lines += text.count("\n")
            return len(text)

    out = Counting()
    tracemalloc.start()
    try:
        count = store.export_jsonl(out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == out.lines == 2000
    assert peak < 2_500_000, f"export peaked at {peak} bytes"


def test_a_version_3_store_gains_the_checkpoints_and_the_index_keeping_its_rows(
    tmp_path, monkeypatch
):
    path = tmp_path / "t.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        m.setattr(migrations, "SCHEMA_VERSION", 3)
        with Store(path) as old:
            run = new_run()
            old.insert_run(run)
    e = event()
    raw = sqlite3.connect(path)
    with raw:  # as a release of version 3 wrote it (no later column)
        raw.execute(
            "INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at) "
            "VALUES (?, ?, 'time_spent', ?, ?, 1.0)",
            (e["id"], run.id, SENSOR, json.dumps(e)),
        )
    raw.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 4
        assert [x["id"] for x in store.events()] == [e["id"]]
        assert store.open_windows() == []
        store.save_open_windows("me", [(run.id, 15.0, 20.0, 5.0, 0.0)], 20.0)
        assert store.open_windows() == [("me", 20.0, [Window(run.id, 15.0, 20.0, 5.0, 0.0)])]
    raw = sqlite3.connect(path)
    names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    raw.close()
    assert {"open_windows", "outbox_prunable"} <= names


def test_recovering_a_checkpoint_skips_time_already_recorded_and_drops_the_row(store):
    run = new_run()
    store.insert_run(run)
    record(store, run, 0.0)  # [0, 15]
    merged = event("merged")  # [15, 45]: windows merged while the store failed (tracker)
    store.record_windows([(Window(run.id, 15.0, 45.0, 30.0, 0.0), merged, SENSOR)])
    store.save_open_windows("gone", [(run.id, 0.0, 13.0, 13.0, 0.0),  # in [0, 15]
                                     (run.id, 30.0, 38.0, 8.0, 0.0),  # in the merged one
                                     (run.id, 45.0, 52.5, 7.5, 0.0)], 52.5)  # fmt: skip
    store.save_open_windows("alive", [(run.id, 60.0, 61.0, 1.0, 0.0)], 61.0)
    [(owner, saved_at, windows)] = store.open_windows(besides="alive")
    assert (owner, saved_at, len(windows)) == ("gone", 52.5, 3)
    items = [(w, event(w.start), SENSOR) for w in windows]
    assert store.recover_open_windows("gone", items) == [Window(run.id, 45.0, 52.5, 7.5, 0.0)]
    assert store.get_run(run.id).active_seconds == 15.0 + 30.0 + 7.5
    assert [o for o, _, _ in store.open_windows()] == ["alive"]
    assert store.recover_open_windows("gone", items) == []  # nothing twice
    store.save_open_windows("alive", [], 62.0)
    assert store.open_windows() == []
    with pytest.raises(InvalidInput, match="windows"):
        store.save_open_windows("alive", [(run.id, float("nan"), 1.0, 1.0, 0.0)], 1.0)


def test_an_unreadable_checkpoint_is_named_and_does_not_stop_ours(tmp_path, caplog):
    from .test_tracker import QUIZ, Clock, make_tracker

    now = Clock()
    with Store(tmp_path / "t.sqlite3", now=now) as store:
        store._db.execute(
            "INSERT INTO open_windows (owner, saved_at, runs, times) "
            "VALUES ('broken', 0, 'a,b', x'0102')"
        )
        with pytest.raises(StoreError, match="the checkpoint of 'broken' is unreadable"):
            store.open_windows()
        tracker = make_tracker(store, now)
        run = tracker.start(QUIZ, path="quiz.ipynb").run
        now.t += 3
        tracker.signal(run.id, "input")
        tracker.tick()
        assert tracker.checkpoints.saved == 1
        assert (
            tracker.checkpoints.owner
            in store._db.execute("SELECT group_concat(owner) FROM open_windows").fetchone()[0]
        )
        assert "recovering the open windows of a server gone failed" in caplog.text
        assert caplog.text.count("is unreadable") == 1
        now.t += 2
        tracker.tick()  # said once
        assert caplog.text.count("is unreadable") == 1


# ---- in-memory caches of the server: bounded, or pruned when their object goes -------------


async def test_a_presence_socket_remembers_a_bounded_number_of_notebooks(
    jp_serverapp, jp_ws_fetch, monkeypatch
):
    from timeback_jupyter.server import presence_socket

    from .test_presence_socket import ROUTE, ask, report
    from .test_server import started

    ext = await started(jp_serverapp)
    monkeypatch.setattr(presence_socket, "MAX_REPORTED", 3)
    ws = await jp_ws_fetch(*ROUTE)
    try:
        for n, path in enumerate(["a.ipynb", "b.ipynb", "c.ipynb", "a.ipynb", "d.ipynb"]):
            assert (await ask(ws, {"id": n, **report(path)})) == {"id": n, "run": None}
        [socket] = ext.presence_sockets._open
        # the least recently reported went; a repeat counts as recent
        assert list(socket._reported) == [
            ("c.ipynb", "tab-1"),
            ("a.ipynb", "tab-1"),
            ("d.ipynb", "tab-1"),
        ]
        left = report("a.ipynb", visible=False, focused=False, leaving=True)
        await ask(ws, {"id": 9, **left})
        socket.renamed("c.ipynb", "e.ipynb")
        assert list(socket._reported) == [("e.ipynb", "tab-1"), ("d.ipynb", "tab-1")]
    finally:
        ws.close()


async def test_a_kernel_that_dies_for_good_is_let_go_of_everywhere(
    jp_serverapp, jp_fetch, jp_root_dir
):
    """Jupyter removes a kernel its restarter gave up on without a shutdown event: the next
    reconcile lets go of its stream, restarter callback, token and notebook binding, and
    ends its notebook's run as a shutdown would."""
    from .conftest import QUIZ, wait_for, write_notebook
    from .test_server import open_notebook, started

    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    kernel_id = session["kernel"]["id"]
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    await wait_for(lambda: kernel_id in ext.binding.watcher._lifetimes, what="the watch")
    km = jp_serverapp.kernel_manager
    kernel = km.get_kernel(kernel_id)
    kernel._restarter.restart_limit = 0  # the first death is final: Jupyter removes it
    kernel._restarter.time_to_dead = 0.2
    kernel.provisioner.process.kill()
    await wait_for(lambda: kernel_id not in km.list_kernel_ids(), what="Jupyter to drop it")
    await ext.binding.reconcile()
    assert kernel_id not in ext.binding.watcher.watched
    assert kernel_id not in ext.binding.watcher._lifetimes
    assert kernel_id not in ext.binding.kernel_paths
    assert ext.tracker.run_at(path) is None
    assert ext.tracker.get(run_id).status == "ended"


def test_settled_jobs_go_with_their_events_and_pending_ones_stay(store, clock):
    """The jobs table grows one row per envelope sent to Timeback: settled jobs as old as the
    kept period leave after the events' backlog; a pending job is never pruned."""
    run = new_run()
    store.insert_run(run)
    for job in ("job-done", "job-failed", "job-pending"):
        record(store, run, 15.0 * len(store.jobs_pending()))
        batch = store.claim_batch(10)
        store.record_job([i.event_id for i in batch], job)
    store.confirm("job-done")
    store.job_failed("job-failed", "upstream said no", limit=5)
    clock.t += 10 * DAY
    assert store.job_stats()["confirmed"] == 1 and store.job_stats()["failed"] == 1
    assert store.prune_sent(clock.t - 5 * DAY) == 1 + 2  # the confirmed event, two jobs
    stats = store.job_stats()
    assert (stats["pending"], stats["failed"], stats["confirmed"]) == (1, 0, 0)
    assert [j.job_id for j in store.jobs_pending()] == ["job-pending"]
    assert store.prune_sent(clock.t - 5 * DAY) == 0
