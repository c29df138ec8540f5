"""One store, one owner: a second `jupyter server` on a store records nothing and says why, so
no time counts twice; it takes over when the first stops. A store on a network file system is
found and warned about."""

import itertools
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from timeback_jupyter.store import owner
from timeback_jupyter.store.owner import StoreOwner, filesystem_of, network_filesystem

from .conftest import QUIZ, write_notebook
from .jupyter_process import Server, wait

# /proc/self/mountinfo of a hub whose home directories are on NFS (a space escaped as \040)
MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683568k
61 27 0:52 / /home rw,relatime shared:30 - nfs4 fs1:/export/home rw,vers=4.2,rsize=1048576
62 61 0:53 / /home/ada/scratch rw,relatime - ext4 /dev/vdb rw
63 27 0:54 / /mnt/class\\040share rw,relatime shared:31 master:2 - cifs //srv/class rw,vers=3.0
64 27 0:55 / /srv/tmp rw - nfs fs2:/tmp rw
65 27 0:56 / /srv/tmp rw - tmpfs tmpfs rw
"""


def test_the_file_system_of_a_store_is_found_from_mountinfo(tmp_path: Path):
    home = "/home/ada/.local/share/jupyter/timeback/timeback.sqlite3"
    assert filesystem_of(home, MOUNTINFO) == "nfs4"
    assert filesystem_of("/home/ada/scratch/t.sqlite3", MOUNTINFO) == "ext4"  # the longest
    assert filesystem_of("/home2/t.sqlite3", MOUNTINFO) == "ext4"  # a prefix is not a parent
    assert filesystem_of("/mnt/class share/t.sqlite3", MOUNTINFO) == "cifs"
    assert filesystem_of("/srv/tmp/t.sqlite3", MOUNTINFO) == "tmpfs"  # mounted over the nfs
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO + f"70 27 0:60 / {tmp_path}/nfs rw - nfs4 fs1:/x rw\n")
    # a store not made yet: its nearest directory that exists decides
    assert network_filesystem(str(tmp_path / "nfs" / "a" / "t.sqlite3"), str(info)) is None
    (tmp_path / "nfs").mkdir()
    assert network_filesystem(str(tmp_path / "nfs" / "a" / "t.sqlite3"), str(info)) == "nfs4"
    # this machine's own table: the test's directory is on a local disk
    assert network_filesystem(str(tmp_path / "timeback.sqlite3")) is None
    assert filesystem_of(str(tmp_path), Path("/proc/self/mountinfo").read_text()) in (
        "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs",
    )  # fmt: skip


def test_one_owner_per_store_and_a_dead_owner_frees_it(tmp_path: Path):
    store = str(tmp_path / "timeback.sqlite3")
    first, second = StoreOwner(store), StoreOwner(store)
    assert first.acquire("http://127.0.0.1:8888/")
    assert not second.acquire()
    refusal = second.refusal()
    assert refusal.startswith(
        f"the store {store} is recorded into by another process (pid {os.getpid()}, "
        "http://127.0.0.1:8888/, since "
    )
    assert "no time counts twice" in refusal and "c.Timeback.store_path" in refusal
    first.release()
    assert second.acquire()
    second.release()


@pytest.fixture
def nfs_store(tmp_path, monkeypatch, store_path):
    """The test's store directory shown as an NFS mount in a mountinfo of its own."""
    info = tmp_path / "mountinfo"
    info.write_text(
        MOUNTINFO + f"70 27 0:60 / {store_path.parent} rw - nfs4 fs1:/export/x rw,vers=4.2\n"
    )
    monkeypatch.setattr(owner, "MOUNTINFO", str(info))
    return store_path


@pytest.fixture
def timeback_config(nfs_store):
    return {"store_path": str(nfs_store), "student_email": "ada@school.edu"}


async def test_a_store_on_nfs_is_warned_about_with_the_fix(
    capfd, nfs_store, jp_serverapp, jp_fetch
):
    await jp_serverapp._post_start()
    ext = jp_serverapp.web_app.settings["timeback"]
    assert not ext.problem  # it still records: the warning is the admin's to act on
    warning = (
        f"the store {nfs_store} is on a network file system (nfs4): SQLite's WAL and file locks "
        "are unreliable there"
    )
    assert ext.store_warning.startswith(warning)
    assert "c.Timeback.store_path" in ext.store_warning
    assert f"TimebackApp] timeback: {warning}" in capfd.readouterr().err  # in the server log
    status = json.loads((await jp_fetch("timeback", "api", "status")).body)
    assert status["store"] == {"error": None, "warning": ext.store_warning}
    assert status["recording"] is True


def _runs(store: Path) -> list[tuple[str, int, float, float]]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return list(
            db.execute("SELECT id, attempt, started_at, active_seconds FROM runs ORDER BY attempt")
        )


def _windows(store: Path) -> list[tuple[str, float, float, float, float]]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return list(
            db.execute('SELECT run_id, start, "end", active, inactive FROM windows ORDER BY start')
        )


def test_two_servers_on_one_store_the_second_says_so_and_nothing_counts_twice(tmp_path: Path):
    root = tmp_path / "notebooks"
    root.mkdir()
    path = write_notebook(root, "quiz.ipynb", {"activity": QUIZ})
    store = tmp_path / "timeback.sqlite3"
    began = time.time()
    first = Server(tmp_path / "one", root, store)
    second = None
    try:
        wait(lambda: first.http.get("/timeback/api/status").json()["recording"], what="recording")
        second = Server(tmp_path / "two", root, store)
        state = second.http.get("/timeback/api/status").json()
        assert state["recording"] is False
        expected = (
            f"the store {store} is recorded into by another process (pid {first.proc.pid}, "
            f"{first.url}/"
        )
        assert state["problem"].startswith(expected), state["problem"]
        assert "this server records nothing, so no time counts twice" in state["problem"]
        assert expected in second.log_path.read_text()
        # Jupyter itself works in the second server; its timeback calls say why they refuse.
        refused = second.http.post("/timeback/api/runs", json={"path": path})
        assert refused.status_code == 503 and expected in refused.json()["message"]

        # The student works on the same notebook through both servers at once.
        kernels = [first.open(path)["kernel"]["id"], second.open(path)["kernel"]["id"]]
        shown = second.run_cells(kernels[1], ["%load_ext timeback_jupyter", "%timeback status"])[1]
        assert "recorded into by another process" in shown, shown
        first.execute(kernels[0], 3)
        second.execute(kernels[1], 3)
        wait(lambda: _windows(store), what="the first server's windows")
        runs = _runs(store)
        assert len(runs) == 1 and runs[0][1] == 1, runs  # only the owner started a run
        assert {w[0] for w in _windows(store)} == {runs[0][0]}

        # The owner stops: the second takes over and records from then on, attempt 2.
        first.stop()
        wait(
            lambda: second.http.get("/timeback/api/status").json()["recording"],
            timeout=60,
            what="the second server to take over",
        )
        assert "this server records now" in second.log_path.read_text()
        second.execute(kernels[1], 3)
        wait(lambda: len(_runs(store)) == 2, timeout=60, what="the second server's run")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    runs = _runs(store)
    assert [r[1] for r in runs] == [1, 2]  # no attempt number twice
    windows = _windows(store)
    # one student, one clock at a time: the windows never overlap and never exceed the wall
    spans = sorted((start, end) for _, start, end, _, _ in windows)
    assert all(a_end <= b_start + 1e-6 for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    counted = sum(active + inactive for *_, active, inactive in windows)
    assert counted <= time.time() - began
