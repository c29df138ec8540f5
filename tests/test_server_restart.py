"""A real `jupyter server` stopped (gracefully and with kill -9) mid-run, then started again."""

import itertools

import pytest

from .conftest import LESSON, write_notebook
from .jupyter_process import Server, notebook_run, stored, wait


@pytest.mark.parametrize("how", ["kill -9", "graceful"])
def test_run_survives_a_server_restart(tmp_path, how):
    root = tmp_path / "notebooks"
    root.mkdir()
    store = tmp_path / "timeback.sqlite3"
    path = write_notebook(root, "lesson.ipynb", {"activity": LESSON})

    first = Server(tmp_path, root, store)
    try:
        session = first.open(path)
        run = wait(lambda: notebook_run(root, path), what="the run in the notebook")
        first.execute(session["kernel"]["id"], 5)
        wait(lambda: len(stored(store)[0]) >= 2, what="heartbeats in the store")
        before, _ = stored(store)
    finally:
        first.kill() if how == "kill -9" else first.stop()

    second = Server(tmp_path, root, store)
    try:
        session = second.open(path)
        wait(lambda: len(stored(store)[0]) > len(before) + 1, what="heartbeats after restart")
        second.execute(session["kernel"]["id"], 3)
        status = second.http.get("/timeback/api/status").json()
        assert status["live_runs"] == 1
        assert notebook_run(root, path)["id"] == run["id"]
    finally:
        second.stop()

    after, windows = stored(store)
    assert before == after[: len(before)], "an acknowledged event was lost or reordered"
    assert len(after) == len(set(after)), "an event was stored twice"
    assert {w[0] for w in windows} == {run["id"]}, "the run did not continue"
    for (_, _, end), (_, start, _) in itertools.pairwise(windows):
        assert start >= end - 1e-6, "two windows of the run overlap: time counted twice"


def test_a_run_whose_id_never_reached_the_notebook_resumes_after_kill_9(tmp_path):
    # A browser client writes the runId into its unsaved model, so the server does not: killed
    # before a save, the file has no run, and the next opening must still resume the run.
    root = tmp_path / "notebooks"
    root.mkdir()
    store = tmp_path / "timeback.sqlite3"
    path = write_notebook(root, "lesson.ipynb", {"activity": LESSON})
    start = {"path": path, "client": "jupyterlab"}

    first = Server(tmp_path, root, store)
    try:
        run = first.http.post("/timeback/api/runs", json=start).json()["run"]
    finally:
        first.kill()
    assert notebook_run(root, path) is None

    second = Server(tmp_path, root, store)
    try:
        again = second.http.post("/timeback/api/runs", json=start).json()
    finally:
        second.kill()  # the answer is committed before it is sent: no need to wait for a stop
    assert again["resumed"] is True, again
    assert (again["run"]["id"], again["run"]["attempt"]) == (run["id"], 1)
