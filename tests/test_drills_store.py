"""Drill: the store on a full or read-only disk, locked by another process, or corrupt.

Each scenario runs a real jupyter_server with the extension. Whatever happens to the store,
Jupyter keeps working (contents, sessions, kernels, and without stalls: a store waiting on a
lock must not freeze the event loop), the timeback status says what is wrong in words an admin
can act on, the timeback API answers 503 with that reason, and nothing already stored is lost
(events committed before the fault are all there afterwards, byte for byte when the store
could not even open).

A full disk is a real small tmpfs filled up when this process may mount one (root in a
container, as `make test` runs here); elsewhere SQLite's own SQLITE_FULL is provoked with
``PRAGMA max_page_count`` on the server's store connection. A read-only disk is a read-only
tmpfs mount for root (who ignores file modes), file modes otherwise (TIMEBACK_DRILLS_NO_MOUNT=1
picks the fallbacks even for root; as root the file modes then do not bite and that case skips).
The lock is a real second connection holding ``BEGIN EXCLUSIVE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from timeback_jupyter.model import Activity, CourseRef, Run
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import SENSOR, time_spent_events

from .conftest import LESSON, body, wait_for, write_notebook

STALL = 1.5  # seconds: no Jupyter request may take longer while the store is failing


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root in a container); probed once, when needed."""
    if os.environ.get("TIMEBACK_DRILLS_NO_MOUNT") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(f"/tmp/tb-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        tried = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        )
        ok = tried.returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def seed_store(path: Path) -> list[str]:
    """A store holding a run and some committed events, as a previous session left it."""
    run_id = str(uuid.uuid4())
    with Store(path) as store:
        activity = Activity("fractions-lesson", "Fractions lesson", CourseRef("Math", 3), True)
        store.insert_run(Run(id=run_id, activity=activity, student="s-1", started_at=1.0))
        events = time_spent_events(run_id, 5)
        for event in events:
            store.enqueue(event, run_id=run_id, kind=KIND_TIME_SPENT, sensor=SENSOR)
    return [e["id"] for e in events]


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of the store and its WAL and shm files, whichever exist."""
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            out[suffix or "db"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_no_time_lost(path: Path, run_id: str) -> None:
    """The run's windows tile its time: none missing across the failure, none overlapping."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        spans = list(
            db.execute(
                'SELECT start, "end" FROM windows WHERE run_id = ? ORDER BY start', (run_id,)
            )
        )
    assert len(spans) >= 3
    gaps = [(a_end, b_start) for (_, a_end), (b_start, _) in itertools.pairwise(spans)
            if abs(b_start - a_end) > 1e-6]  # fmt: skip
    assert not gaps, f"time lost or counted twice between windows: {gaps}"


def event_ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return [r[0] for r in db.execute("SELECT event_id FROM outbox ORDER BY seq")]


@pytest.fixture
def store_path(request, tmp_path):
    """The store, prepared as the test's parameter says, before the server starts."""
    scenario = getattr(request, "param", "fresh")
    home = tmp_path / "store"
    with contextlib.ExitStack() as stack:
        if scenario in ("small-disk", "read-only") and can_mount():
            stack.enter_context(tmpfs(home, "2m" if scenario == "small-disk" else "4m"))
        home.mkdir(exist_ok=True)
        path = home / "timeback.sqlite3"
        if scenario == "corrupt":
            path.write_bytes(b"SQLite format 3\x00" + os.urandom(8000))
        elif scenario == "not-a-store":
            path.write_text("these are somebody's notes, not a database\n" * 50)
        elif scenario == "damaged":
            seed_store(path)
            data = bytearray(path.read_bytes())
            data[4096 : 4096 * 3] = os.urandom(4096 * 2)  # pages 2 and 3: tables, outbox
            path.write_bytes(bytes(data))
        elif scenario == "read-only":
            if not can_mount() and os.geteuid() == 0:
                pytest.skip("root ignores file modes and no read-only mount is possible here")
            seed_store(path)
            if can_mount():
                subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
            else:
                path.chmod(0o444)
                home.chmod(0o555)
                stack.callback(home.chmod, 0o755)
        yield path


async def start(jp_serverapp):
    await jp_serverapp._post_start()
    return jp_serverapp.web_app.settings["timeback"]


async def status(jp_fetch) -> dict:
    return body(await jp_fetch("timeback", "api", "status"))


async def jupyter_works(jp_fetch, jp_root_dir, name: str) -> None:
    """Contents, sessions and kernels answer, each well under STALL."""
    timings = {}
    t = time.monotonic()
    r = await jp_fetch("api", "contents", method="GET")
    timings["list"] = time.monotonic() - t
    assert r.code == 200
    nb = {
        "type": "notebook",
        "content": json.loads(
            (jp_root_dir / write_notebook(jp_root_dir, f"tmp-{name}.ipynb")).read_text()
        ),
    }
    t = time.monotonic()
    r = await jp_fetch("api", "contents", f"saved-{name}.ipynb", method="PUT", body=json.dumps(nb))
    timings["save"] = time.monotonic() - t
    assert r.code in (200, 201)
    r = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps(
            {
                "path": f"saved-{name}.ipynb",
                "type": "notebook",
                "name": name,
                "kernel": {"name": "python3"},
            }
        ),
    )
    session = body(r)
    assert session["kernel"]["id"]
    await jp_fetch("api", "sessions", session["id"], method="DELETE")
    slow = {k: v for k, v in timings.items() if v > STALL}
    assert not slow, f"Jupyter stalled: {slow}"


async def stalls_while(jp_fetch, seconds: float) -> float:
    """The longest Jupyter request over ``seconds`` of polling its contents API."""
    worst = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = time.monotonic()
        await jp_fetch("api", "contents", method="GET")
        worst = max(worst, time.monotonic() - t)
        await asyncio.sleep(0.02)
    return worst


async def timeback_refuses(jp_fetch, run_id: str, words: tuple[str, ...]) -> str:
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "timeback",
            "api",
            "runs",
            run_id,
            "exercises",
            method="POST",
            body=json.dumps({"exercise": "q1", "correct": True}),
        )
    answer = json.loads(err.value.response.body)
    assert err.value.code == 503, answer
    assert any(w in answer["message"] for w in words), answer
    return answer["message"]


async def live_run(ext, jp_fetch, jp_root_dir) -> str:
    path = write_notebook(jp_root_dir, "lesson.ipynb", {"activity": LESSON})
    answer = body(
        await jp_fetch(
            "timeback",
            "api",
            "runs",
            method="POST",
            body=json.dumps({"path": path, "client": "jupyterlab"}),
        )
    )
    run_id = answer["run"]["id"]
    await wait_for(
        lambda: ext.store.stats()["pending"] + ext.store.stats()["sent"] >= 2,
        what="heartbeats stored",
    )
    return run_id


def store_problem(state: dict) -> str:
    """Everything the status says about the store, as one text."""
    return json.dumps({k: state.get(k) for k in ("problem", "store", "outbox", "delivery")})


# ---- failures while running ------------------------------------------------------------------


async def test_a_locked_store_never_freezes_jupyter_and_says_so(
    jp_serverapp, jp_fetch, jp_root_dir, store_path
):
    ext = await start(jp_serverapp)
    run_id = await live_run(ext, jp_fetch, jp_root_dir)
    before = event_ids(store_path)

    other = sqlite3.connect(store_path, isolation_level=None)  # another process's connection
    other.execute("BEGIN EXCLUSIVE")
    try:
        worst = await stalls_while(jp_fetch, 2.0)
        assert worst < STALL, f"a Jupyter request waited {worst:.1f}s on the locked store"
        await jupyter_works(jp_fetch, jp_root_dir, "locked")
        state = await wait_for(
            lambda: _status_mentions(jp_fetch, "locked"), what="the status to say it is locked"
        )
        assert state["recording"] is False
        await timeback_refuses(jp_fetch, run_id, ("locked",))
    finally:
        other.execute("ROLLBACK")
        other.close()

    # The lock is gone: recording resumes by itself, and what was stored is all there.
    await wait_for(lambda: _status_clear(jp_fetch), what="the status to clear")
    count = len(event_ids(store_path))
    await wait_for(lambda: len(event_ids(store_path)) > count, what="new heartbeats")
    after = event_ids(store_path)
    assert after[: len(before)] == before
    assert_no_time_lost(store_path, run_id)


@pytest.mark.parametrize("store_path", ["small-disk"], indirect=True)
async def test_a_full_disk_keeps_jupyter_working_and_loses_nothing(
    jp_serverapp, jp_fetch, jp_root_dir, store_path
):
    ext = await start(jp_serverapp)
    run_id = await live_run(ext, jp_fetch, jp_root_dir)
    filler = store_path.parent / "filler"
    if can_mount():
        # Fill the store's small disk, leaving no room for the WAL to grow.
        with open(filler, "wb") as fp, contextlib.suppress(OSError):
            while True:
                fp.write(b"\0" * 65536)
                fp.flush()
    else:
        pages = ext.store._conn.execute("PRAGMA page_count").fetchone()[0]
        ext.store._conn.execute(f"PRAGMA max_page_count = {pages}")
    before = event_ids(store_path)
    try:
        state = await wait_for(
            lambda: _status_mentions(jp_fetch, "full"), what="the status to say the disk is full"
        )
        assert state["recording"] is False
        await jupyter_works(jp_fetch, jp_root_dir, "full")
        if can_mount():  # (max_page_count still lets a row change in place: no refusal then)
            await timeback_refuses(jp_fetch, run_id, ("full",))
    finally:
        if can_mount():
            filler.unlink()
        else:
            ext.store._conn.execute("PRAGMA max_page_count = 1073741823")

    await wait_for(lambda: _status_clear(jp_fetch), what="the status to clear")
    count = len(event_ids(store_path))
    await wait_for(lambda: len(event_ids(store_path)) > count, what="new heartbeats")
    after = event_ids(store_path)
    assert after[: len(before)] == before
    with contextlib.closing(sqlite3.connect(store_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert_no_time_lost(store_path, run_id)


# ---- stores that cannot open -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("store_path", "words"),
    [
        ("read-only", ("read-only", "writable")),
        ("corrupt", ("not a timeback store", "malformed")),
        ("not-a-store", ("not a timeback store", "malformed")),
        ("damaged", ("not a timeback store", "malformed")),
    ],
    indirect=["store_path"],
)
async def test_a_store_that_cannot_be_used_is_reported_and_left_untouched(
    jp_serverapp, jp_fetch, jp_root_dir, store_path, words
):
    original = fingerprint(store_path)
    await start(jp_serverapp)
    state = await status(jp_fetch)
    assert state["recording"] is False
    assert any(w in store_problem(state) for w in words), state
    assert str(store_path) in state["problem"]  # names the file an admin has to look at
    await jupyter_works(jp_fetch, jp_root_dir, "broken")
    path = write_notebook(jp_root_dir, "lesson.ipynb", {"activity": LESSON})
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    assert err.value.code == 503
    assert any(w in json.loads(err.value.response.body)["message"] for w in words)
    assert fingerprint(store_path) == original, "the store file was changed"


async def _status_mentions(jp_fetch, word: str) -> dict | None:
    state = await status(jp_fetch)
    return state if word in store_problem(state) else None


async def _status_clear(jp_fetch) -> bool:
    state = await status(jp_fetch)
    return state["recording"] is True and not state.get("store", {}).get("error")
