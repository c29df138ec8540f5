"""The WAL checkpoint is off the commit path, yet the WAL stays bounded and nothing is lost.

Real SQLite files, real threads, real subprocesses killed with SIGKILL. Sizes are read from
the files themselves: a WAL restarted by a checkpoint keeps its file size, a WAL that only
grew is as big as everything committed into it.
"""

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from timeback_jupyter.model import InvalidInput
from timeback_jupyter.store import CHECKPOINT_HARD, Store, StoreError

ROOT = Path(__file__).resolve().parent.parent
SENSOR = "https://notebooks.example.edu"
PAGE = 4096
FRAME = PAGE + 24  # a WAL frame: one page and its header
WAL_HEADER = 32


def event(n: int) -> dict:
    # About two pages per event, so the WAL grows fast without many commits.
    return {"id": f"urn:uuid:{uuid.uuid4()}", "type": "TimeSpentEvent", "n": n, "pad": "x" * 6000}


def enqueue(store: Store, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        store.enqueue(event(n), run_id=None, kind="time_spent", sensor=SENSOR)


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def rows(path: Path) -> list[int]:
    """The outbox's event numbers, read by a connection of its own (as the CLI would)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [
            json.loads(p)["n"] for (p,) in conn.execute("SELECT payload FROM outbox ORDER BY seq")
        ]
    finally:
        conn.close()


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "timeback-store-checkpoint"]


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_commits_never_checkpoint(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    with Store(path, checkpoint_pages=None) as store:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        db_before = path.stat().st_size
        sizes = []
        for batch in range(12):
            enqueue(store, 100, batch * 100)
            sizes.append(wal_size(path))
        # SQLite's autocheckpoint would have started the WAL over near 1000 pages and kept its
        # file there; here it holds every commit, and nothing reached the database file.
        assert sizes == sorted(sizes)
        assert sizes[-1] > 2000 * FRAME
        assert path.stat().st_size == db_before
        assert checkpoint_threads() == []
        assert rows(path) == list(range(1200))  # another connection reads them from the WAL

        assert store.checkpoint() is True
        # Truncated, then one small write so the next commit does not pay the header fsync.
        assert wal_size(path) <= WAL_HEADER + 2 * FRAME
        assert path.stat().st_size > 2000 * PAGE
        assert rows(path) == list(range(1200))
        enqueue(store, 1, 1200)
        assert store.depth() == 1201


def test_the_store_thread_empties_the_wal_once_commits_pause(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    store = Store(path, checkpoint_pages=50)
    try:
        enqueue(store, 3)
        assert 0 < wal_size(path) < 50 * FRAME
        assert checkpoint_threads() == []  # a small WAL starts nothing
        enqueue(store, 67, 3)
        assert len(checkpoint_threads()) == 1
        assert wait_until(lambda: wal_size(path) <= WAL_HEADER + 2 * FRAME)
        assert rows(path) == list(range(70))
        # And again: the thread waits for the next time the WAL passes its bound.
        enqueue(store, 60, 70)
        assert wait_until(lambda: wal_size(path) <= WAL_HEADER + 2 * FRAME)
        assert store.depth() == 130
    finally:
        store.close()
    assert checkpoint_threads() == []  # close() stops it
    assert not Path(f"{path}-wal").exists()  # and the last connection removes the WAL
    assert rows(path) == list(range(130))


def test_commits_that_never_pause_still_keep_the_wal_bounded(tmp_path: Path):
    bounded = Store(tmp_path / "bounded.sqlite3", checkpoint_pages=10)
    control = Store(tmp_path / "control.sqlite3", checkpoint_pages=None)
    try:
        largest = n = 0
        started = time.monotonic()
        # Commits with no pause the idle checkpoint could use, past the hard bound (160
        # pages) many times over: the WAL must be started over in place as they go on. The
        # control store, given the same commits, keeps all of them in its WAL.
        while time.monotonic() - started < 2.0:
            enqueue(bounded, 5, n)
            enqueue(control, 5, n)
            n += 5
            largest = max(largest, wal_size(tmp_path / "bounded.sqlite3"))
        written = wal_size(tmp_path / "control.sqlite3")
        assert written > 30 * 10 * CHECKPOINT_HARD * FRAME, "too slow a machine for this test"
        assert largest < written / 2
        restarted = bounded._db.execute(
            "SELECT value FROM meta WHERE key = 'wal_restarted_at'"
        ).fetchone()
        assert restarted is not None
        assert rows(tmp_path / "bounded.sqlite3") == list(range(n))
    finally:
        bounded.close()
        control.close()
    assert rows(tmp_path / "bounded.sqlite3") == list(range(n))


def test_a_reader_holds_off_the_checkpoint_not_the_commits(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    store = Store(path, checkpoint_pages=None, busy_timeout=5)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        enqueue(store, 300)
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM outbox").fetchone() == (300,)
        enqueue(store, 300, 300)
        started = time.monotonic()
        assert store.checkpoint() is False  # the reader still uses the WAL: it is kept
        enqueue(store, 1, 600)  # commits go on, without waiting out busy_timeout
        assert time.monotonic() - started < 2
        assert reader.execute("SELECT COUNT(*) FROM outbox").fetchone() == (300,)  # its snapshot
        reader.execute("COMMIT")
        assert reader.execute("SELECT COUNT(*) FROM outbox").fetchone() == (601,)
        assert store.checkpoint() is True
        assert wal_size(path) <= WAL_HEADER + 2 * FRAME
        assert reader.execute("SELECT COUNT(*) FROM outbox").fetchone() == (601,)
    finally:
        reader.close()
        store.close()


def test_a_writer_without_our_settings_shares_the_file(tmp_path: Path):
    """An older version (SQLite's autocheckpoint on its commits) writing alongside."""
    path = tmp_path / "t.sqlite3"
    store = Store(path, checkpoint_pages=20)
    old = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        assert old.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        for n in range(400):
            store.enqueue(event(2 * n), run_id=None, kind="time_spent", sensor=SENSOR)
            payload = json.dumps(event(2 * n + 1))
            old.execute(
                "INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at) "
                "VALUES (?, NULL, 'time_spent', ?, ?, 0)",
                (str(uuid.uuid4()), SENSOR, payload),
            )
        assert wait_until(lambda: wal_size(path) <= WAL_HEADER + 2 * FRAME)
        assert rows(path) == list(range(800))
    finally:
        old.close()
        store.close()
    assert rows(path) == list(range(800))


def test_the_wal_is_found_through_a_symlink(tmp_path: Path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.sqlite3"
    link.symlink_to(tmp_path / "real" / "t.sqlite3")
    with Store(link, checkpoint_pages=None) as store:
        enqueue(store, 3)
        assert store.wal_bytes() == wal_size(tmp_path / "real" / "t.sqlite3") > 0
        assert store.checkpoint() is True
        assert store.wal_bytes() <= WAL_HEADER + 2 * FRAME


def test_checkpoint_arguments_and_a_closed_store(tmp_path: Path):
    for bad in (0, -1, 1.5, True, "1000"):
        with pytest.raises(InvalidInput, match="checkpoint_pages"):
            Store(tmp_path / "x.sqlite3", checkpoint_pages=bad)  # type: ignore[arg-type]
    store = Store(tmp_path / "t.sqlite3")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.checkpoint()


WRITER = textwrap.dedent(
    """
    import sys, time, uuid
    from timeback_jupyter.store import Store

    pages = None if sys.argv[2] == "none" else int(sys.argv[2])
    store = Store(sys.argv[1], checkpoint_pages=pages)
    n = int(sys.argv[3])
    while True:
        store.enqueue(
            {"id": f"urn:uuid:{uuid.uuid4()}", "type": "TimeSpentEvent", "n": n, "pad": "x" * 6000},
            run_id=None, kind="time_spent", sensor="https://notebooks.example.edu",
        )
        print(n, flush=True)  # committed: the parent may count on it from here
        n += 1
        if sys.argv[4] == "stop" and n % 300 == 0:
            print("idle", flush=True)
            sys.stdin.readline()  # wait to be killed, with the WAL as it is
        if sys.argv[4] == "run" and n % 150 == 0:
            time.sleep(0.15)  # a pause: the store thread empties the WAL
    """
)


class Writer:
    """The writer subprocess, its lines read on a thread (select() cannot see Python's buffer)."""

    def __init__(self, path: Path, pages: str, start: int, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), pages, str(start), mode],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.last = -1  # the last number it reported committed
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # end of output

    def read(self, until: str | None, seconds: float) -> int:
        """Its reports for ``seconds`` or until it says ``until``; the last number committed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            assert line, f"the writer stopped: {self.proc.stderr.read()}"
            if line == until:
                return self.last
            self.last = int(line)
        assert until is None, f"the writer never said {until!r}"
        return self.last

    def started(self, seconds: float) -> None:
        """Wait for its first commit, so that a kill lands among commits, not in its start."""
        line = self.lines.get(timeout=seconds)
        assert line, f"the writer stopped: {self.proc.stderr.read()}"
        self.last = int(line)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        # What it printed before the kill counts as committed too.
        while line := self.lines.get(timeout=10):
            if line != "idle":
                self.last = int(line)


@pytest.mark.timeout(60)
def test_kill_9_before_any_checkpoint_keeps_every_committed_row(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    writer = Writer(path, "none", 0, "stop")
    try:
        assert writer.read("idle", 30) == 299
        # Everything is in the WAL only: the database file has never been written since.
        assert wal_size(path) > 300 * 2 * FRAME
        assert path.stat().st_size < 50 * PAGE
    finally:
        writer.kill()
    with Store(path) as store:  # SQLite replays the WAL
        assert store.depth() == 300
    assert rows(path) == list(range(300))


@pytest.mark.timeout(120)
def test_kill_9_while_checkpoints_run_keeps_every_committed_row(tmp_path: Path):
    """Kills at random moments of a writer whose store thread restarts (commits going on) and
    truncates (in its pauses) the WAL."""
    path = tmp_path / "t.sqlite3"
    rng = random.Random(7)
    expected = 0
    for _ in range(4):
        writer = Writer(path, "10", expected, "run")
        try:
            writer.started(30)  # an interpreter starts slowly on a loaded machine
            writer.read(None, rng.uniform(0.5, 2.0))
        finally:
            writer.kill()
        last = writer.last
        assert last >= expected, "the writer committed nothing"
        found = rows(path)
        # Every reported commit is there, in order; one more may have committed unreported.
        assert found[: last + 1] == list(range(last + 1))
        assert len(found) - (last + 1) in (0, 1)
        expected = len(found)
    with Store(path, checkpoint_pages=None) as store:
        assert store.checkpoint() is True
        assert store.depth() == expected
