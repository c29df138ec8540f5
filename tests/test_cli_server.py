"""The CLI beside a real `jupyter server`: it finds the server delivering its store, asks it to
flush, and after a student works through the quiz, `report` shows the run's time and its
completion. Server and CLI share one config file, as on a real machine."""

from __future__ import annotations

import re

import pytest

from .conftest import QUIZ, write_notebook
from .jupyter_process import Server, wait
from .test_cli import jupyter, make_env


@pytest.fixture
def env(tmp_path, monkeypatch):
    return make_env(tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_after_the_quiz_the_cli_reports_it_and_flushes_through_the_server(env):
    root = env.tmp / "notebooks"
    root.mkdir()
    write_notebook(root, "quiz.ipynb", {"activity": QUIZ})
    server = Server(env.tmp, root, env.store)
    try:
        kernel_id = server.open("quiz.ipynb")["kernel"]["id"]
        server.execute(kernel_id, 4)
        run = server.http.post("/timeback/api/runs", json={"path": "quiz.ipynb"}).json()["run"]
        wait(
            lambda: (
                server.http.get(f"/timeback/api/runs/{run['id']}").json()["run"]["active_seconds"]
                > 0
            ),
            what="active time recorded",
        )
        done = server.http.post(
            f"/timeback/api/runs/{run['id']}/complete", json={"total": 4, "correct": 3}
        )
        assert done.status_code == 200, done.text

        status = jupyter(env, "status")
        assert status.code == 0, status
        assert f"server:         {server.url}/ (pid {server.proc.pid}), recording" in status.out

        flushed = jupyter(env, "flush")
        assert flushed.code == 0, flushed
        assert flushed.out.startswith(
            f"flushed through the Jupyter server at {server.url}/ (pid {server.proc.pid})"
        )
        assert "to the local sink" in flushed.out and "0 left to send" in flushed.out

        # Configured for Timeback but without credentials here: only the server can deliver.
        asked = jupyter(env, "flush", "--Timeback.sink=timeback")
        assert asked.code == 0, asked
        assert asked.out.startswith(f"flushed through the Jupyter server at {server.url}/")

        report = jupyter(env, "report")
        assert report.code == 0, report
        [row] = [line for line in report.out.splitlines() if run["id"][:8] in line]
        cells = row.split()
        assert cells[:4] == ["fractions-quiz", run["id"][:8], "1", "completed"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", cells[4])
        assert cells[5] != "0:00:00"  # the cells' run time, active
        assert "\u2713" in row and "3/4 correct" in row
    finally:
        server.stop()

    # The server is gone: the CLI now flushes from here, and says so.
    after = jupyter(env, "flush")
    assert after.code == 0, after
    assert after.out.startswith(
        f"flushed from here: no running Jupyter server delivers {env.store}"
    )
