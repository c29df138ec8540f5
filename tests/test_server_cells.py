"""A running cell stops counting when its kernel stops running it (killed, interrupted,
restarted), and an endless cell stops counting ``running_cell_limit`` after the student's last
touch: a real jupyter_server with real ipykernels, idle after 1 s so that only a running cell
keeps a run active."""

import asyncio
import json
import os
import signal
import time

import pytest

from timeback_jupyter.config import Timeback

from .conftest import QUIZ, wait_for, write_notebook
from .test_server import kernel_client, open_notebook, started

# The product's heartbeat: a dead kernel's cell must not count for longer than one window.
HEARTBEAT = Timeback().heartbeat_interval
SLEEP_FOREVER = "import time\nwhile True:\n    time.sleep(0.1)"


@pytest.fixture
def timeback_config(timeback_config, request):
    return {
        **timeback_config,
        "idle_after": 1.0,
        "heartbeat_interval": 0.25,
        **getattr(request, "param", {}),
    }


def describe(ext, run_id):
    return ext.tracker.describe(ext.tracker.get(run_id))


async def cell_running(jp_serverapp, jp_fetch, jp_root_dir, code):
    """A notebook's run, idle, then a cell of ``code`` running in its kernel."""
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    await wait_for(lambda: describe(ext, run_id)["state"] == "inactive", what="idle after 1 s")
    kernel_id = session["kernel"]["id"]
    client = kernel_client(jp_serverapp, kernel_id)
    client.execute(code)
    await wait_for(lambda: describe(ext, run_id)["state"] == "active", what="the cell running")
    # Well past idle_after: only the running cell keeps the run active now.
    await asyncio.sleep(1.5)
    assert describe(ext, run_id)["state"] == "active"
    return ext, path, run_id, kernel_id, client


async def stops_counting(ext, run_id, what, timeout=HEARTBEAT):
    """The run turns inactive within ``timeout``; the active time counted meanwhile."""
    before = describe(ext, run_id)["active_seconds"]
    await wait_for(lambda: describe(ext, run_id)["state"] == "inactive", timeout=timeout, what=what)
    return describe(ext, run_id)["active_seconds"] - before


async def test_a_kernel_killed_mid_cell_stops_the_runs_active_time_within_a_heartbeat(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext, _, run_id, kernel_id, client = await cell_running(
        jp_serverapp, jp_fetch, jp_root_dir, "import time; time.sleep(600)"
    )
    client.stop_channels()
    kernel = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    os.kill(kernel.provisioner.pid, signal.SIGKILL)  # the OOM killer, a segfault
    killed = time.monotonic()
    counted = await stops_counting(ext, run_id, "the dead kernel's cell to stop counting")
    # Jupyter's restarter notices the death within its poll (3 s) and tells us at once.
    assert time.monotonic() - killed < HEARTBEAT
    assert counted < HEARTBEAT
    await asyncio.sleep(1.0)
    assert describe(ext, run_id)["state"] == "inactive"  # and stays so: no cell runs
    assert ext.tracker.run_at("quiz.ipynb") == run_id  # the run goes on with the new kernel


async def test_an_interrupt_ends_the_cell_even_when_the_kernel_cannot_stop_it(
    jp_serverapp, jp_fetch, jp_root_dir
):
    # The cell ignores SIGINT (as one stuck in C code would): it keeps running, so no idle
    # comes on IOPub; the interrupt itself says the student wants it stopped.
    ext, _, run_id, kernel_id, client = await cell_running(
        jp_serverapp,
        jp_fetch,
        jp_root_dir,
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)",
    )
    try:
        await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body=b"")
        counted = await stops_counting(ext, run_id, "the interrupted cell to stop counting", 5)
        assert counted < 2.0
        assert jp_serverapp.kernel_manager.get_kernel(kernel_id).execution_state == "busy"
    finally:
        client.stop_channels()


async def test_a_restart_mid_cell_ends_the_cell_and_cells_count_again_afterwards(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext, _, run_id, kernel_id, client = await cell_running(
        jp_serverapp, jp_fetch, jp_root_dir, "import time; time.sleep(600)"
    )
    client.stop_channels()
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body=b"")
    counted = await stops_counting(ext, run_id, "the restarted kernel's cell to stop counting")
    assert counted < HEARTBEAT
    client = kernel_client(jp_serverapp, kernel_id)
    try:
        client.execute("import time; time.sleep(2)")
        await wait_for(lambda: describe(ext, run_id)["state"] == "active", what="a new cell")
    finally:
        client.stop_channels()


@pytest.mark.parametrize("timeback_config", [{"running_cell_limit": 2.0}], indirect=True)
async def test_an_endless_cell_stops_counting_after_the_limit_until_the_student_touches_it(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    await wait_for(lambda: describe(ext, run_id)["state"] == "inactive", what="idle after 1 s")
    kernel_id = session["kernel"]["id"]
    client = kernel_client(jp_serverapp, kernel_id)
    try:
        before = describe(ext, run_id)["active_seconds"]
        client.execute(SLEEP_FOREVER)
        await wait_for(lambda: describe(ext, run_id)["state"] == "active", what="the cell")
        await wait_for(lambda: describe(ext, run_id)["state"] == "inactive", what="the limit (2 s)")

        async def counted() -> float:
            # Read once the window holding the limit has closed and been written: a window
            # closed but not yet written is left out of the run's figure for a moment (issue
            # 19), which is not the rule under test. Heartbeats here are 0.5 s.
            await asyncio.sleep(0.8)
            await wait_for(lambda: ext.tracker.unrecorded == 0, what="windows written")
            return describe(ext, run_id)["active_seconds"] - before

        at_limit = await counted()
        # the cell counted while within the limit, and not beyond it (touched when it started)
        assert at_limit >= 1.5, f"the running cell counted only {at_limit:.2f} s of its 2 s"
        assert at_limit <= 2.5, f"the running cell counted {at_limit:.2f} s past its 2 s limit"
        # the cell still runs, nothing is touched: nothing more counts
        assert await counted() == pytest.approx(at_limit, abs=0.05), "an untouched cell counted"
        assert jp_serverapp.kernel_manager.get_kernel(kernel_id).execution_state == "busy"

        # The student scrolls the output in front: the cell counts again, for 2 s more.
        report = {"path": path, "source": "tab-1", "visible": True, "focused": True, "idle_ms": 0}
        await jp_fetch("timeback", "api", "presence", method="POST", body=json.dumps(report))
        assert describe(ext, run_id)["state"] == "active"
        await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body=b"")
    finally:
        client.stop_channels()
