import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from timeback_jupyter.model import Activity, Completion, CourseRef, InvalidInput, Run, Window
from timeback_jupyter.store import (
    KIND_COMPLETION,
    KIND_TIME_SPENT,
    SCHEMA_VERSION,
    Store,
    StoreError,
    migrations,
)

SENSOR = "https://notebooks.example.edu"
OTHER_SENSOR = "https://other.example.edu"
ACTIVITY = Activity("fractions-1", "Fractions 1", CourseRef("Math", 3), stateful=True)


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def new_run(attempt: int = 1, student: str = "abc123", activity: Activity = ACTIVITY) -> Run:
    return Run(
        id=str(uuid.uuid4()),
        activity=activity,
        student=student,
        attempt=attempt,
        started_at=100.0 * attempt,
        origin="lessons/fractions.ipynb",
    )


def event(n: int | str = 0) -> dict:
    # The store treats events as opaque JSON with an id; caliper.py builds real ones.
    return {"id": f"urn:uuid:{uuid.uuid4()}", "type": "TimeSpentEvent", "n": n}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path, clock: Clock):
    s = Store(tmp_path / "timeback.sqlite3", now=clock)
    yield s
    s.close()


# -- schema, WAL, version -------------------------------------------------------------------


def test_new_store_is_wal_with_schema_version(tmp_path: Path):
    path = tmp_path / "sub" / "dir" / "t.sqlite3"  # missing directories are created
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.path == str(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    # Kept in step for releases before user_version, which read only this row.
    version_row = raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert version_row == (str(SCHEMA_VERSION),)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "runs", "windows", "completions", "outbox", "dead_letters"} <= tables
    assert "open_windows" in tables
    raw.close()


def test_reopening_keeps_the_data(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    run = new_run()
    with Store(path) as s:
        s.insert_run(run)
    with Store(path) as s:
        assert s.get_run(run.id) == run


@pytest.mark.parametrize(
    "mark",
    ["PRAGMA user_version = 7", "UPDATE meta SET value = '7' WHERE key = 'schema_version'"],
    ids=["user_version", "meta-row"],
)
def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path, mark: str):
    path = tmp_path / "t.sqlite3"
    with Store(path) as s:
        s.enqueue(event(), run_id=None, kind="x", sensor=SENSOR)
    raw = sqlite3.connect(path)
    raw.execute(mark)
    raw.commit()
    raw.close()
    before = digest(path)
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(err.value) == (
        f"{path}: made by a newer timeback-jupyter (schema version 7, this one knows up to "
        f"{SCHEMA_VERSION}); upgrade timeback-jupyter to open it"
    )
    assert digest(path) == before
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] in (SCHEMA_VERSION, 7)
    assert raw.execute("SELECT COUNT(*) FROM outbox").fetchone() == (1,)
    raw.close()


def test_migrations_run_in_order_from_an_older_version(tmp_path: Path, monkeypatch):
    path = tmp_path / "t.sqlite3"
    with Store(path) as s:
        s.enqueue(event(), run_id=None, kind="x", sensor=SENSOR)
    extra = ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"]
    current, newer = SCHEMA_VERSION, SCHEMA_VERSION + 1
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, extra])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", newer)
    with Store(path) as s:
        assert s.schema_version == newer
        assert s.depth() == 1  # the data survived the migration
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (newer,)
    version_row = raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert version_row == (str(newer),)
    assert raw.execute("SELECT COUNT(*) FROM notes").fetchone() == (0,)
    raw.close()
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", current)  # the older code now refuses it
    with pytest.raises(StoreError, match="made by a newer timeback-jupyter"):
        Store(path)


def test_an_unrelated_sqlite_database_is_not_touched(tmp_path: Path):
    path = tmp_path / "mine.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE grades (student TEXT, score REAL)")
    raw.commit()
    raw.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a timeback store"):
        Store(path)
    assert digest(path) == before
    # Other programs number their schemas too: theirs is not ours, newer or not.
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 42")
    raw.commit()
    raw.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a timeback store"):
        Store(path)
    assert digest(path) == before


def test_foreign_keys_are_enforced(db: Store):
    assert db._db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert db._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


# -- runs ---------------------------------------------------------------------------------


def test_run_roundtrip_and_duplicate(db: Store):
    run = new_run()
    run.exercises = {"q1": True}
    db.insert_run(run)
    assert db.get_run(run.id) == run
    assert db.get_run(str(uuid.uuid4())) is None
    with pytest.raises(StoreError, match=f"run {run.id} already exists"):
        db.insert_run(run)


def test_latest_run_list_runs_and_next_attempt(db: Store):
    other = Activity("decimals", "Decimals", CourseRef("Math", 4))
    first, second = new_run(1), new_run(2)
    someone_else = new_run(1, student="zzz999")
    elsewhere = new_run(1, activity=other)
    for run in (second, first, someone_else, elsewhere):
        db.insert_run(run)
    assert db.latest_run(ACTIVITY.id, "abc123") == second
    assert db.latest_run("nothing", "abc123") is None
    assert db.next_attempt(ACTIVITY.id, "abc123") == 3
    assert db.next_attempt(ACTIVITY.id, "new-student") == 1
    assert [r.id for r in db.list_runs(activity_id=ACTIVITY.id, student="abc123")] == [
        first.id,
        second.id,
    ]
    assert {r.id for r in db.list_runs(student="abc123")} == {first.id, second.id, elsewhere.id}
    assert len(db.list_runs()) == 4
    db.set_run_status(first.id, "ended", 150.0)
    assert [r.id for r in db.list_runs(status="ended")] == [first.id]
    with pytest.raises(InvalidInput, match="status"):
        db.list_runs(status="bogus")


def test_open_run_at_is_the_latest_run_begun_there_unless_completed(db: Store):
    origin = "lessons/fractions.ipynb"
    first, second = new_run(1), new_run(2)
    other = Activity("decimals", "Decimals", CourseRef("Math", 4))
    decoys = [
        new_run(3, student="zzz999"),  # another student
        new_run(3, activity=other),  # another activity
        Run(str(uuid.uuid4()), ACTIVITY, "abc123", 3, started_at=900.0, origin="copy.ipynb"),
        Run(str(uuid.uuid4()), ACTIVITY, "abc123", 4, started_at=950.0, origin=None),
    ]
    assert db.open_run_at(ACTIVITY.id, "abc123", origin) is None
    for run in (second, first, *decoys):
        db.insert_run(run)
    assert db.open_run_at(ACTIVITY.id, "abc123", origin) == second
    db.set_run_status(second.id, "ended", 300.0)
    assert db.open_run_at(ACTIVITY.id, "abc123", origin).id == second.id  # ended: resumable
    db.record_completion(Completion(second.id, 1.0, 310.0), event(), SENSOR)
    # The latest run there is completed: the older one left open does not come back.
    assert db.open_run_at(ACTIVITY.id, "abc123", origin) is None
    assert db.open_run_at(ACTIVITY.id, "zzz999", origin) == decoys[0]
    # A few rows per student and activity: the existing index finds them, no new one needed.
    ran: list[str] = []
    db._db.set_trace_callback(ran.append)  # the SQL with its parameters filled in
    try:
        db.open_run_at(ACTIVITY.id, "abc123", origin)
    finally:
        db._db.set_trace_callback(None)
    plan = db._db.execute(f"EXPLAIN QUERY PLAN {ran[-1]}").fetchall()
    assert "USING INDEX runs_one_per_attempt" in str(plan), plan


def test_run_status_changes(db: Store):
    run = new_run()
    db.insert_run(run)
    db.set_run_status(run.id, "ended", 150.0)
    ended = db.get_run(run.id)
    assert (ended.status, ended.ended_at) == ("ended", 150.0)
    db.set_run_status(run.id, "active", 160.0)  # a stateful run resumed
    resumed = db.get_run(run.id)
    assert (resumed.status, resumed.ended_at) == ("active", None)
    with pytest.raises(InvalidInput, match="status"):
        db.set_run_status(run.id, "paused", 1.0)
    with pytest.raises(InvalidInput, match="record_completion"):
        db.set_run_status(run.id, "completed", 1.0)
    with pytest.raises(StoreError, match="no run"):
        db.set_run_status(str(uuid.uuid4()), "ended", 1.0)


def test_completed_is_final(db: Store):
    run = new_run()
    db.insert_run(run)
    db.record_completion(Completion(run.id, 1.0, 200.0), event(), SENSOR)
    db.set_run_status(run.id, "ended", 300.0)  # closing the tab afterwards changes nothing
    assert db.get_run(run.id).status == "completed"
    assert db.get_run(run.id).ended_at == 200.0
    with pytest.raises(StoreError, match="is completed; start a new attempt"):
        db.set_run_status(run.id, "active", 300.0)


def test_set_exercise_records_and_updates(db: Store):
    run = new_run()
    db.insert_run(run)
    db.set_exercise(run.id, "q1", False)
    db.set_exercise(run.id, "q2", True)
    db.set_exercise(run.id, "q1", True)  # the student re-ran the cell
    assert db.get_run(run.id).exercises == {"q1": True, "q2": True}
    with pytest.raises(InvalidInput, match="exercise_id"):
        db.set_exercise(run.id, " ", True)
    with pytest.raises(InvalidInput, match="correct"):
        db.set_exercise(run.id, "q3", "yes")
    with pytest.raises(StoreError, match="no run"):
        db.set_exercise(str(uuid.uuid4()), "q1", True)


# -- windows and completions ----------------------------------------------------------------


def test_record_window_adds_totals_and_enqueues(db: Store):
    run = new_run()
    db.insert_run(run)
    e1, e2 = event(1), event(2)
    db.record_window(Window(run.id, 100.0, 115.0, 12.0, 3.0), e1, SENSOR)
    db.record_window(Window(run.id, 115.0, 130.0, 15.0, 0.0), e2, SENSOR)
    stored = db.get_run(run.id)
    assert (stored.active_seconds, stored.inactive_seconds) == (27.0, 3.0)
    assert list(db.events()) == [e1, e2]
    items = db.claim_batch(10)
    assert [(i.run_id, i.kind, i.sensor) for i in items] == [(run.id, KIND_TIME_SPENT, SENSOR)] * 2


def test_record_window_is_idempotent(db: Store):
    run = new_run()
    db.insert_run(run)
    window = Window(run.id, 100.0, 115.0, 12.0, 3.0)
    db.record_window(window, event(1), SENSOR)
    db.record_window(window, event(2), SENSOR)  # a retried flush of the same window
    stored = db.get_run(run.id)
    assert (stored.active_seconds, stored.inactive_seconds) == (12.0, 3.0)
    assert [e["n"] for e in db.events()] == [1]
    windows = db._db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
    assert windows == 1


def test_record_window_needs_its_run_and_an_event_id(db: Store):
    with pytest.raises(StoreError, match="no run"):
        db.record_window(Window(str(uuid.uuid4()), 0.0, 15.0, 1.0, 0.0), event(), SENSOR)
    run = new_run()
    db.insert_run(run)
    with pytest.raises(InvalidInput, match="event.id"):
        db.record_window(Window(run.id, 0.0, 15.0, 1.0, 0.0), {"type": "x"}, SENSOR)
    with pytest.raises(InvalidInput, match="sensor"):
        db.record_window(Window(run.id, 0.0, 15.0, 1.0, 0.0), event(), "")
    assert db.depth() == 0
    assert db.get_run(run.id).active_seconds == 0.0


def test_record_windows_is_one_transaction_all_or_none(db: Store):
    run = new_run()
    db.insert_run(run)
    first = Window(run.id, 100.0, 115.0, 12.0, 3.0)
    db.record_windows(
        [(first, event(1), SENSOR), (Window(run.id, 115.0, 130.0, 15.0, 0.0), event(2), SENSOR)]
    )
    assert [e["n"] for e in db.events()] == [1, 2]
    assert db.get_run(run.id).active_seconds == 27.0
    # a window of an unknown run in the middle: the windows before it are not kept either
    stray = Window(str(uuid.uuid4()), 130.0, 145.0, 1.0, 0.0)
    later = Window(run.id, 130.0, 145.0, 15.0, 0.0)
    with pytest.raises(StoreError, match="no run"):
        db.record_windows([(later, event(3), SENSOR), (stray, event(4), SENSOR)])
    assert [e["n"] for e in db.events()] == [1, 2]
    assert db.get_run(run.id).active_seconds == 27.0
    # an invalid item is refused before anything is written; a repeat in a batch is skipped
    with pytest.raises(InvalidInput, match="sensor"):
        db.record_windows([(later, event(3), SENSOR), (later, event(5), "")])
    db.record_windows([(later, event(3), SENSOR), (first, event(6), SENSOR)])
    assert [e["n"] for e in db.events()] == [1, 2, 3]
    assert db.get_run(run.id).active_seconds == 42.0
    db.record_windows([])
    assert db.depth() == 3


def test_one_completion_per_run(db: Store):
    run = new_run()
    db.insert_run(run)
    first, second = event("first"), event("second")
    assert db.get_completion(run.id) is None
    created, stored = db.record_completion(
        Completion(run.id, 2.0, 200.0, total_questions=3, correct_questions=2), first, SENSOR
    )
    assert (created, stored) == (True, first)
    created, stored = db.record_completion(Completion(run.id, 5.0, 300.0), second, SENSOR)
    assert (created, stored) == (False, first)
    assert db.get_completion(run.id) == first
    assert [e["n"] for e in db.events()] == ["first"]
    done = db.get_run(run.id)
    assert (done.status, done.ended_at) == ("completed", 200.0)
    assert db.claim_batch(5)[0].kind == KIND_COMPLETION
    # The rule lives in the schema: a raw INSERT cannot add a second completion either.
    raw = sqlite3.connect(db.path)
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute(
            "INSERT INTO completions (run_id, event_id, metrics, at) VALUES (?, 'x', '{}', 1)",
            (run.id,),
        )
    raw.close()


def test_first_completion_is_answered_even_after_dead_lettering(db: Store):
    run = new_run()
    db.insert_run(run)
    first = event("first")
    db.record_completion(Completion(run.id, 1.0, 200.0), first, SENSOR)
    db.dead_letter([first["id"]], "rejected")
    assert db.record_completion(Completion(run.id, 1.0, 300.0), event(), SENSOR) == (False, first)


def test_duplicate_event_id_is_refused(db: Store):
    e = event()
    db.enqueue(e, run_id=None, kind="x", sensor=SENSOR)
    with pytest.raises(StoreError, match="already in the outbox"):
        db.enqueue(e, run_id=None, kind="x", sensor=SENSOR)
    with pytest.raises(InvalidInput, match="JSON"):
        db.enqueue({"id": "urn:x", "bad": float("nan")}, run_id=None, kind="x", sensor=SENSOR)


# -- outbox -------------------------------------------------------------------------------


def test_claim_takes_oldest_pending_of_one_sensor_in_order(db: Store):
    events = [event(i) for i in range(6)]
    sensors = [SENSOR, OTHER_SENSOR, SENSOR, SENSOR, OTHER_SENSOR, SENSOR]
    seqs = [
        db.enqueue(e, run_id=None, kind="x", sensor=s) for e, s in zip(events, sensors, strict=True)
    ]
    assert seqs == sorted(seqs)
    batch = db.claim_batch(3)
    assert [i.payload["n"] for i in batch] == [0, 2, 3]
    assert all(i.attempts == 1 and i.sensor == SENSOR for i in batch)
    assert [i.event_id for i in db.inflight()] == [i.event_id for i in batch]
    assert db.depth() == 6
    # The next claim starts from the oldest pending event, whatever its sensor.
    assert [i.payload["n"] for i in db.claim_batch(10)] == [1, 4]
    assert [i.payload["n"] for i in db.claim_batch(10)] == [5]
    assert db.claim_batch(10) == []
    with pytest.raises(InvalidInput, match="limit"):
        db.claim_batch(0)


def test_release_keeps_order_and_ids_and_ack_settles(db: Store, clock: Clock):
    events = [event(i) for i in range(4)]
    for e in events:
        db.enqueue(e, run_id=None, kind="x", sensor=SENSOR)
    first = db.claim_batch(2)
    db.release([i.event_id for i in first], "HTTP 503")
    again = db.claim_batch(2)
    assert [i.event_id for i in again] == [i.event_id for i in first]
    assert [i.attempts for i in again] == [2, 2]
    row = db._db.execute("SELECT last_error FROM outbox WHERE seq = ?", (first[0].seq,))
    assert row.fetchone() == ("HTTP 503",)
    clock.t = 2_000.0
    db.ack([i.event_id for i in again])
    assert db.depth() == 2
    assert [e["n"] for e in db.events(status="sent")] == [0, 1]
    assert [e["n"] for e in db.events(status="pending")] == [2, 3]
    sent_at = db._db.execute("SELECT sent_at FROM outbox WHERE seq = ?", (first[0].seq,))
    assert sent_at.fetchone() == (2_000.0,)
    # A release after an ack does not resurrect a sent event.
    db.release([events[0]["id"]], "late")
    assert [e["n"] for e in db.events(status="sent")] == [0, 1]


def test_dead_letter_moves_events_out_of_the_queue(db: Store, clock: Clock):
    run = new_run()
    db.insert_run(run)
    events = [event(i) for i in range(3)]
    for e in events:
        db.enqueue(e, run_id=run.id, kind=KIND_TIME_SPENT, sensor=SENSOR)
    batch = db.claim_batch(2)
    clock.t = 1_500.0
    db.dead_letter([i.event_id for i in batch], "object.subject: 'Cooking' is not allowed")
    letters = db.dead_letters()
    assert [d.payload for d in letters] == events[:2]
    assert {(d.run_id, d.kind, d.at) for d in letters} == {(run.id, KIND_TIME_SPENT, 1_500.0)}
    assert all("Cooking" in d.reason for d in letters)
    assert db.depth() == 1
    assert [i.payload["n"] for i in db.claim_batch(5)] == [2]


def test_stats(db: Store, clock: Clock):
    db.insert_run(new_run())
    for i in range(4):
        clock.t = 1_000.0 + i
        db.enqueue(event(i), run_id=None, kind="x", sensor=SENSOR)
    batch = db.claim_batch(2)
    db.ack([batch[0].event_id])
    db.dead_letter([batch[1].event_id], "bad")
    clock.t = 1_010.0
    assert db.stats() == {
        "pending": 2,
        "inflight": 0,
        "sent": 1,
        "dead": 1,
        "runs": 1,
        "oldest_pending_age": 8.0,
    }
    db.claim_batch(5)
    assert db.stats()["inflight"] == 2


def test_export_jsonl_has_every_event(db: Store):
    events = [event(i) for i in range(4)]
    for e in events:
        db.enqueue(e, run_id=None, kind="x", sensor=SENSOR)
    batch = db.claim_batch(2)
    db.ack([batch[0].event_id])
    db.dead_letter([batch[1].event_id], "bad")
    out = io.StringIO()
    assert db.export_jsonl(out) == 4
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [events[0], events[2], events[3], events[1]]


# -- failures -------------------------------------------------------------------------------


def test_corrupt_file_is_reported_and_untouched(tmp_path: Path):
    path = tmp_path / "timeback.sqlite3"
    path.write_bytes(b"this is my thesis, not a database\n" * 200)
    before = digest(path)
    with pytest.raises(StoreError) as err:
        Store(path)
    message = str(err.value)
    assert "not a timeback store / database disk image is malformed" in message
    assert str(path) in message
    assert digest(path) == before
    assert not Path(str(path) + "-wal").exists()


def test_locked_database_waits_then_fails_clearly(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    s = Store(path, busy_timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process mid-write
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked by another process") as err:
            s.insert_run(new_run())
        assert time.monotonic() - started >= 0.15  # it waited busy_timeout first
        assert str(path) in str(err.value)
        with pytest.raises(StoreError, match="locked by another process"):
            Store(path, busy_timeout=0.1)
        assert s.depth() == 0  # reads still work under WAL while someone writes
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    run = new_run()
    s.insert_run(run)  # and writes resume once the lock is gone
    assert s.get_run(run.id) == run
    s.close()


def test_disk_full_is_reported(db: Store):
    db.enqueue(event(), run_id=None, kind="x", sensor=SENSOR)
    pages = db._db.execute("PRAGMA page_count").fetchone()[0]
    # SQLite reports a database at max_page_count exactly as it reports a full disk.
    db._db.execute(f"PRAGMA max_page_count = {pages}")
    big = {"id": "urn:uuid:big", "blob": "x" * 200_000}
    with pytest.raises(StoreError, match="disk full"):
        db.enqueue(big, run_id=None, kind="x", sensor=SENSOR)
    assert db.depth() == 1


READ_ONLY_PROBE = textwrap.dedent(
    """
    import json, sys
    from timeback_jupyter.store import Store, StoreError
    results = {}
    for name, path in json.loads(sys.argv[1]).items():
        try:
            Store(path).close()
            results[name] = "opened"
        except StoreError as err:
            results[name] = str(err)
    print(json.dumps(results))
    """
)


def _unprivileged() -> list[str]:
    """A prefix that makes permissions bite even when the tests run as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, "--inh-caps=-all", f"--bounding-set={caps}", "--"]


def test_read_only_file_and_directory_are_reported(tmp_path: Path):
    ro_file = tmp_path / "rw" / "ro-file.sqlite3"
    in_ro_dir = tmp_path / "ro" / "existing.sqlite3"
    new_in_ro_dir = tmp_path / "ro" / "new.sqlite3"
    for path in (ro_file, in_ro_dir):
        with Store(path) as s:
            s.enqueue(event(), run_id=None, kind="x", sensor=SENSOR)
    ro_file.chmod(0o444)
    in_ro_dir.parent.chmod(0o555)
    before = {p: digest(p) for p in (ro_file, in_ro_dir)}
    paths = {"file": str(ro_file), "dir": str(in_ro_dir), "new": str(new_in_ro_dir)}
    try:
        proc = subprocess.run(
            [*_unprivileged(), sys.executable, "-c", READ_ONLY_PROBE, json.dumps(paths)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        in_ro_dir.parent.chmod(0o755)
        ro_file.chmod(0o644)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert (
        results["file"]
        == f"{ro_file}: database is read-only (check the file and directory permissions)"
    )
    assert results["dir"].startswith(f"{in_ro_dir}: ")
    assert "read-only" in results["dir"] or "cannot open" in results["dir"]
    assert results["new"].startswith(f"{new_in_ro_dir}: cannot open the database file")
    assert {p: digest(p) for p in before} == before
    assert not new_in_ro_dir.exists()


def test_closed_store_says_so(tmp_path: Path):
    s = Store(tmp_path / "t.sqlite3")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.depth()
    assert "t.sqlite3" in repr(s)


def test_bad_arguments_are_named(tmp_path: Path, db: Store):
    with pytest.raises(InvalidInput, match="busy_timeout"):
        Store(tmp_path / "x.sqlite3", busy_timeout=-1)
    with pytest.raises(InvalidInput, match="status"):
        db.events(status="lost")
    with pytest.raises(InvalidInput, match="window"):
        db.record_window("not a window", event(), SENSOR)  # type: ignore[arg-type]


def test_two_processes_creating_the_same_store_at_once(tmp_path: Path):
    path = tmp_path / "shared.sqlite3"
    script = textwrap.dedent(
        """
        import sys, time
        from timeback_jupyter.store import Store
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        with Store(sys.argv[1]) as s:
            print(s.schema_version)
        """
    )
    start_at = str(time.time() + 1.0)  # both start migrating at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), start_at],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [str(SCHEMA_VERSION)] * 4


# -- one run per attempt (issue 15) ---------------------------------------------------------


def test_an_attempt_number_is_one_run(db: Store):
    first = new_run(attempt=1)
    db.insert_run(first)
    with pytest.raises(StoreError) as err:
        db.insert_run(new_run(attempt=1))
    assert str(err.value) == (
        f"{db.path}: attempt 1 of fractions-1 is already a run of this student (one run per "
        "attempt)"
    )
    # another student, or another activity, has its own numbers
    db.insert_run(new_run(attempt=1, student="other"))
    db.insert_run(new_run(attempt=1, activity=Activity("quiz-2", "Quiz 2", CourseRef("Math", 3))))
    # insert_attempt keeps a free number (a notebook from another server keeps its own)...
    kept = db.insert_attempt(new_run(attempt=5))
    assert kept.attempt == 5
    # ...and numbers a taken one after the highest, in the same transaction
    again = db.insert_attempt(new_run(attempt=1))
    assert again.attempt == 6 and db.get_run(again.id) == again
    assert sorted(r.attempt for r in db.list_runs(student="abc123", activity_id="fractions-1")) == [
        1, 5, 6,
    ]  # fmt: skip


def test_processes_starting_attempts_at_once_never_share_a_number(tmp_path: Path):
    """Each process asks for "the next attempt" as a tracker does (next_attempt, then insert):
    however they interleave, every run gets its own number."""
    path = tmp_path / "shared.sqlite3"
    Store(path).close()
    script = textwrap.dedent(
        """
        import sys, time, uuid
        from timeback_jupyter.model import Activity, CourseRef, Run
        from timeback_jupyter.store import Store
        activity = Activity("fractions-1", "Fractions 1", CourseRef("Math", 3))
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        with Store(sys.argv[1], busy_timeout=30) as s:
            for _ in range(15):
                attempt = s.next_attempt(activity.id, "abc123")
                run = Run(str(uuid.uuid4()), activity, "abc123", attempt, started_at=1.0)
                s.insert_attempt(run)
        """
    )
    start_at = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), start_at],
            cwd=Path(__file__).resolve().parent.parent,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, errors
    with Store(path) as s:
        attempts = sorted(r.attempt for r in s.list_runs())
    assert attempts == list(range(1, 46))
