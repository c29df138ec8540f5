"""A JupyterHub stops a student's server with SIGINT first: there, the server stops with
Jupyter's cleanup (the run ended, its open window closed, the kernel shut down), as on SIGTERM.
Without a hub, SIGINT without a terminal stays what jupyter_server makes it (server/sigint.py)."""

import signal
import sqlite3

import pytest

from .conftest import QUIZ, write_notebook
from .jupyter_process import Server, notebook_run, wait


def run_status(store, run_id: str) -> str:
    with sqlite3.connect(store) as db:
        return str(db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


@pytest.mark.slow
@pytest.mark.parametrize("hub", [True, False], ids=["on-a-hub", "no-hub"])
def test_sigint_stops_a_hubs_server_with_jupyters_cleanup(tmp_path, hub):
    root = tmp_path / "notebooks"
    root.mkdir()
    store = tmp_path / "timeback.sqlite3"
    path = write_notebook(root, "quiz.ipynb", {"activity": QUIZ})
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"} if hub else {}
    server = Server(tmp_path, root, store, env=env)
    try:
        session = server.open(path)
        run = wait(lambda: notebook_run(root, path), what="the run in the notebook")
        server.execute(session["kernel"]["id"], 2)
        assert run_status(store, run["id"]) == "active"
        server.proc.send_signal(signal.SIGINT)  # as LocalProcessSpawner.stop begins
        code = server.proc.wait(60)
    finally:
        server.stop()
    log = server.log_path.read_text()
    if hub:
        assert code == 0, log[-3000:]
        assert "received signal 2, stopping" in log and "Interrupted..." not in log
        assert "Shutting down" in log and f"Kernel shutdown: {session['kernel']['id']}" in log
        assert run_status(store, run["id"]) == "ended"  # our stop_extension ran
    else:
        assert "Interrupted..." in log and "Kernel shutdown" not in log
        assert run_status(store, run["id"]) == "active"  # nothing ended it: no cleanup ran
