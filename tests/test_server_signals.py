"""Kernel traffic is what makes time active: with a 1 s idle limit, only cells and widgets count."""

import pytest

from .conftest import QUIZ, wait_for, write_notebook
from .test_server import kernel_client, open_notebook, started


@pytest.fixture
def timeback_config(timeback_config):
    return {**timeback_config, "idle_after": 1.0, "heartbeat_interval": 0.25}


def state(ext, run_id):
    return ext.tracker.describe(ext.tracker.get(run_id))["state"]


async def test_cells_and_widget_messages_make_an_idle_run_active(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    await wait_for(lambda: state(ext, run_id) == "inactive", what="idle after 1 s")

    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        # a running cell keeps the run active past the idle limit
        msg_id = client.execute("import time; time.sleep(2.5)")
        await wait_for(lambda: state(ext, run_id) == "active", what="a cell run")
        client.get_shell_msg(timeout=30)  # the cell ended
        assert msg_id
        ext.tracker.tick()
        await wait_for(lambda: state(ext, run_id) == "inactive", what="idle again")
        active_before = ext.tracker.describe(ext.tracker.get(run_id))["active_seconds"]

        # a widget touched: busy with a comm_msg parent
        client.shell_channel.send(
            client.session.msg("comm_msg", {"comm_id": "no-such-comm", "data": {}})
        )
        await wait_for(lambda: state(ext, run_id) == "active", what="a widget message")
    finally:
        client.stop_channels()
    # the 2.5 s cell counted as active although it outlasted the 1 s idle limit
    assert active_before >= 2.5


async def test_the_watcher_rides_on_jupyters_own_iopub_subscription(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    session = await open_notebook(jp_fetch, path)
    kernel_id = session["kernel"]["id"]
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
    kernel = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    stream = kernel._activity_stream
    # One subscription for both: ours is chained behind Jupyter's callback on its stream.
    assert ext.binding.watcher._streams[kernel_id].stream is stream
    await wait_for(lambda: state(ext, run_id) == "inactive", what="idle after 1 s")
    before = kernel.last_activity

    client = kernel_client(jp_serverapp, kernel_id)
    try:
        client.execute("import time; time.sleep(1.5)")
        await wait_for(lambda: state(ext, run_id) == "active", what="a cell run")
        # Jupyter's own bookkeeping still runs on every message.
        await wait_for(lambda: kernel.execution_state == "busy", what="Jupyter sees it busy")
        client.get_shell_msg(timeout=30)
    finally:
        client.stop_channels()
    await wait_for(lambda: kernel.execution_state == "idle", what="Jupyter sees it idle")
    assert kernel.last_activity > before

    # A restart that changes ports makes Jupyter subscribe anew: the watcher follows.
    jp_serverapp.kernel_manager.stop_watching_activity(kernel_id)
    jp_serverapp.kernel_manager.start_watching_activity(kernel_id)
    ext.binding.watcher.refresh()
    assert ext.binding.watcher._streams[kernel_id].stream is kernel._activity_stream is not stream
    await wait_for(lambda: state(ext, run_id) == "inactive", what="idle again")
    client = kernel_client(jp_serverapp, kernel_id)
    try:
        client.execute("import time; time.sleep(1.5)")
        await wait_for(lambda: state(ext, run_id) == "active", what="a cell after the restart")
        client.get_shell_msg(timeout=30)
    finally:
        client.stop_channels()

    # Detached (kernel shut down, extension stopping): Jupyter's callback is given back as is,
    # and our restarter callbacks (a death ends the run's cells) are taken back.
    ours = ext.binding.watcher._lifetimes[kernel_id][1]
    # once, although the watcher attached again (the restart above)
    assert [kernel._restarter.callbacks[e].count(ours) for e in ("restart", "dead")] == [1, 1]
    stream = kernel._activity_stream
    ext.binding.watcher.detach(kernel_id)
    assert stream._recv_callback.__name__ == "record_activity"
    assert not any(ours in kernel._restarter.callbacks[event] for event in ("restart", "dead"))
