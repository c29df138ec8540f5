"""A notebook that declares no activity costs its kernel's cells almost nothing: it is not read
again on every signal, yet a save that adds an activity is noticed at the next cell."""

import asyncio
import json

import nbformat
import pytest

from .conftest import QUIZ, wait_for, write_notebook
from .test_server import kernel_client, open_notebook, started


@pytest.fixture
def timeback_config(timeback_config):
    # Reconcile runs when a session changes (and once a minute): only the cells' signals can
    # start the run within the test's waits once the notebook is open.
    return {**timeback_config, "heartbeat_interval": 600.0}


async def test_cells_of_a_notebook_without_activity_are_not_a_read_each(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "plain.ipynb")
    notebooks = ext.binding._notebooks
    reads: list[str] = []
    last_modified = notebooks.last_modified

    async def counted(p):
        reads.append(p)
        return await last_modified(p)

    notebooks.last_modified = counted
    # The session's creation is caught up with at once: the notebook is looked at then.
    session = await open_notebook(jp_fetch, path)
    kernel_id = session["kernel"]["id"]
    client = kernel_client(jp_serverapp, kernel_id)
    try:
        client.execute_interactive("1 + 1", timeout=60)
        await wait_for(lambda: reads, what="the first look at the notebook")
        seen = len(reads)
        for i in range(10):  # cells one after the other, their signals seen as they come
            client.execute(f"{i} * 2")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert len(reads) <= seen + 2, reads  # not a read per signal
        assert ext.tracker.run_at(path) is None

        # Saved through Jupyter with an activity: the next cell starts the run.
        nb = nbformat.reads((jp_root_dir / path).read_text(), as_version=4)
        nb.metadata["timeback"] = {"activity": QUIZ}
        await jp_fetch(
            "api", "contents", path, method="PUT",
            body=json.dumps({"type": "notebook", "format": "json", "content": nb}),
        )  # fmt: skip
        client.execute_interactive("3 * 2", timeout=60)
        await wait_for(lambda: ext.tracker.run_at(path), timeout=20, what="the run")
    finally:
        client.stop_channels()
