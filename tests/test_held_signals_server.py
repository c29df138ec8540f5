"""Held kernel signals in a real server with a real kernel: a cell's signals are held (not
applied inside Jupyter's IOPub callback), a timer applies them when nothing reads the clock,
and a cell whose signal starts its notebook's run counts in that run."""

import asyncio
import json

import nbformat
import pytest

from .conftest import QUIZ, wait_for, write_notebook
from .test_server import kernel_client, open_notebook, started


@pytest.fixture
def timeback_config(timeback_config):
    # Long windows: no tick reads the clock meanwhile; only the held signals' timer applies them.
    return {**timeback_config, "heartbeat_interval": 600.0}


def running(ext, run_id):
    ext.tracker.describe(ext.tracker.get(run_id))  # a read: applies what is held first
    return ext.tracker.clock._runs[run_id].running


async def test_a_cells_signals_are_held_then_applied_by_the_timer(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    clock_run = ext.tracker.clock._runs[run_id]
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        before = clock_run.last_signal
        client.execute("import time; time.sleep(0.5)")
        await wait_for(lambda: len(ext.binding.held) > 0, what="the cell's start held")
        assert clock_run.last_signal == before  # not applied inside Jupyter's callback
        await wait_for(lambda: len(ext.binding.held) == 0, timeout=5, what="the timer")
        assert clock_run.last_signal > before
        client.get_shell_msg(timeout=30)
    finally:
        client.stop_channels()


async def test_a_cell_that_starts_its_notebooks_run_counts_in_it(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "plain.ipynb")
    session = await open_notebook(jp_fetch, path)
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        client.execute("1 + 1")
        client.get_shell_msg(timeout=30)
        await asyncio.sleep(1.5)  # its signals applied: the notebook was found without activity
        assert ext.tracker.run_at(path) is None
        nb = nbformat.reads((jp_root_dir / path).read_text(), as_version=4)
        nb.metadata["timeback"] = {"activity": QUIZ}
        await jp_fetch(
            "api", "contents", path, method="PUT",
            body=json.dumps({"type": "notebook", "format": "json", "content": nb}),
        )  # fmt: skip
        client.execute("import time; time.sleep(4)")
        run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
        # The cell that started the run is running in it, and its end ends it there.
        await wait_for(lambda: running(ext, run_id) == 1, timeout=3, what="its start counted")
        client.get_shell_msg(timeout=30)
        await wait_for(lambda: running(ext, run_id) == 0, timeout=5, what="its end counted")
    finally:
        client.stop_channels()
