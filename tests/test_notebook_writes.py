"""The server's own writes into notebooks (no browser attached): one read and one write per run
start, to the notebook's path at write time, only the ``timeback`` section changed; one notebook
is one run however its path is spelled. A real jupyter_server, its contents manager and kernels.
"""

import asyncio
import contextlib
import json
import signal
import sqlite3
from pathlib import Path

import nbformat
import pytest

from timeback_jupyter.server.notebook_json import with_section

from .conftest import LESSON, QUIZ, body, wait_for, write_notebook
from .jupyter_process import Server, notebook_run, wait
from .test_server import kernel_client, open_notebook, started

DELAY = 1.5  # metadata_write_delay: long enough to rename a notebook before the write


@pytest.fixture
def timeback_config(timeback_config):
    return {**timeback_config, "metadata_write_delay": DELAY}


def stored_run(store: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(store)) as db:
        row = db.execute("SELECT id FROM runs").fetchone()
    return None if row is None else str(row[0])


class Counted:
    """What the server asks of its real contents manager about one notebook: content reads
    (``get`` with content) and saves."""

    def __init__(self, cm, names: set[str]) -> None:
        self.reads: list[str] = []
        self.saves: list[str] = []
        get, save = cm.get, cm.save

        def counted_get(path, content=True, *args, **kwargs):
            if content and path.strip("/") in names:
                self.reads.append(path)
            return get(path, content, *args, **kwargs)

        def counted_save(model, path=""):
            if path.strip("/") in names:
                self.saves.append(path)
            return save(model, path)

        cm.get, cm.save = counted_get, counted_save


async def run_first_cell(jp_serverapp, jp_fetch, path: str) -> dict:
    session = await open_notebook(jp_fetch, path)
    client = kernel_client(jp_serverapp, session["kernel"]["id"])
    try:
        client.execute_interactive("x = 1", timeout=30)
    finally:
        client.stop_channels()
    return session


async def test_a_run_start_with_no_browser_reads_and_writes_the_notebook_once(
    jp_serverapp, jp_fetch, jp_root_dir, caplog
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    counted = Counted(jp_serverapp.contents_manager, {path})
    await run_first_cell(jp_serverapp, jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run to start")
    await ext.binding.reconcile()  # the reconcile loop asks too
    meta = await wait_for(lambda: notebook_run(Path(jp_root_dir), path), what="the write")
    assert meta["id"] == run_id
    await asyncio.sleep(DELAY)  # any second write would have come by now
    assert (counted.reads, counted.saves) == ([path], [path])
    assert "is not trusted" not in caplog.text
    # starts asked for later (a REST call, the kernel's %timeback start) read what the
    # notebook says now, and find the run written: nothing more to write
    for _ in range(3):
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    await asyncio.sleep(DELAY * 1.5)
    assert len(counted.reads) == 4 and counted.saves == [path]


async def test_a_rename_right_after_the_first_cell_gets_the_run_into_the_renamed_file(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "lesson.ipynb", {"activity": LESSON})
    session = await run_first_cell(jp_serverapp, jp_fetch, path)
    run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run to start")
    # renamed as JupyterLab does it: the file, then the session
    await jp_fetch("api", "contents", path, method="PATCH", body=json.dumps({"path": "unit.ipynb"}))
    await jp_fetch(
        "api", "sessions", session["id"], method="PATCH", body=json.dumps({"path": "unit.ipynb"})
    )
    meta = await wait_for(
        lambda: notebook_run(Path(jp_root_dir), "unit.ipynb"), what="the run in the renamed file"
    )
    assert meta["id"] == run_id and meta["origin"] == "unit.ipynb"
    await asyncio.sleep(DELAY)
    assert not (Path(jp_root_dir) / path).exists()  # nothing written at the old path
    assert ext.store.get_run(run_id).origin == "unit.ipynb"


async def test_a_renamed_directory_takes_its_notebooks_runs_and_writes_along(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    (Path(jp_root_dir) / "week1").mkdir()
    path = write_notebook(jp_root_dir, "week1/lesson.ipynb", {"activity": LESSON})
    started_run = body(
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    )
    await jp_fetch("api", "contents", "week1", method="PATCH", body=json.dumps({"path": "wk1"}))
    meta = await wait_for(
        lambda: notebook_run(Path(jp_root_dir), "wk1/lesson.ipynb"), what="the run written"
    )
    assert meta["id"] == started_run["run"]["id"]
    assert ext.tracker.run_at("wk1/lesson.ipynb") == meta["id"]


async def test_one_notebook_is_one_run_however_its_path_is_spelled(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    (Path(jp_root_dir) / "sub").mkdir()
    path = write_notebook(jp_root_dir, "a.ipynb", {"activity": QUIZ})
    ids = set()
    for spelling in ("./a.ipynb", "a.ipynb", "sub/../a.ipynb", "/a.ipynb", ".//a.ipynb"):
        answer = body(
            await jp_fetch(
                "timeback", "api", "runs", method="POST", body=json.dumps({"path": spelling})
            )
        )
        ids.add(answer["run"]["id"])
        assert answer["run"]["path"] == path
    presence = {"path": "./a.ipynb", "source": "tab", "visible": True, "focused": True}
    seen = body(
        await jp_fetch("timeback", "api", "presence", method="POST", body=json.dumps(presence))
    )
    ids.add(seen["run"]["id"])
    # a kernel session opened under another spelling: its cells count for the same run
    await run_first_cell(jp_serverapp, jp_fetch, "sub/../a.ipynb")
    await ext.binding.reconcile()
    assert set(ext.binding.kernel_paths.values()) == {path}
    assert len(ids) == 1 and ext.tracker.live_runs() == list(ids)
    assert len(ext.store.list_runs()) == 1


async def test_a_run_never_starts_for_a_notebook_that_does_not_exist(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    for payload in ({"path": "gone.ipynb"}, {"path": "gone.ipynb", "activity": QUIZ}):
        with pytest.raises(Exception) as err:
            await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps(payload))
        assert err.value.code == 404
        assert json.loads(err.value.response.body)["message"] == "gone.ipynb: no such notebook"
    assert ext.store.list_runs() == [] and ext.tracker.live_runs() == []


def _laid_out_by_hand(section: dict) -> tuple[str, str, str]:
    """A notebook as another tool left it: two-space indent, keys not sorted, non-ASCII
    escaped, nbformat 4.4 cells without ids, the section last. (head, section, tail)."""
    cells = [{"cell_type": "code", "source": ["x = 'é'"], "metadata": {}, "outputs": [],
              "execution_count": None}]  # fmt: skip
    rest = {"nbformat_minor": 4, "nbformat": 4, "cells": cells}
    head = '{\n  "metadata": {\n    "kernelspec": {"name": "python3", "display_name": "Py"},\n'
    text = json.dumps(rest, indent=2)
    tail = "\n  },\n" + text[2:]
    return head, '    "timeback": ' + json.dumps(section, indent=2).replace("\n", "\n    "), tail


async def test_only_the_timeback_section_of_the_file_changes(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    head, section, tail = _laid_out_by_hand({"activity": LESSON, "grader": {"keep": "ñ"}})
    file = Path(jp_root_dir) / "by-hand.ipynb"
    file.write_text(head + section + tail)
    assert "\\u00e9" in tail and '"id"' not in tail
    # a trusted notebook stays trusted: the server signs what it wrote, as a save would
    notary = jp_serverapp.contents_manager.notary
    notary.sign(nbformat.read(file, as_version=4))
    answer = body(
        await jp_fetch(
            "timeback", "api", "runs", method="POST", body=json.dumps({"path": "by-hand.ipynb"})
        )
    )
    meta = await wait_for(lambda: notebook_run(Path(jp_root_dir), "by-hand.ipynb"), what="write")
    assert meta["id"] == answer["run"]["id"]
    text = file.read_text()
    assert text.startswith(head + '    "timeback": {\n      "activity": ') and text.endswith(tail)
    written = json.loads(text)["metadata"]["timeback"]
    assert written["grader"] == {"keep": "ñ"} and written["run"]["id"] == meta["id"]
    assert notary.check_signature(nbformat.read(file, as_version=4))
    assert ext.tracker.run_at("by-hand.ipynb") == meta["id"]


SECTION = {"schema_version": 2, "run": {"id": "r"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # nbformat's own layout: the section goes where nbformat would sort it
        (
            '{\n "cells": [],\n "metadata": {\n  "kernelspec": {}\n },\n "nbformat": 4\n}',
            '{\n "cells": [],\n "metadata": {\n  "kernelspec": {},\n  "timeback": {\n'
            '   "run": {\n    "id": "r"\n   },\n   "schema_version": 2\n  }\n },\n'
            ' "nbformat": 4\n}',
        ),
        (
            '{\n "metadata": {},\n "nbformat": 4\n}',
            '{\n "metadata": {\n  "timeback": {\n   "run": {\n    "id": "r"\n   },\n'
            '   "schema_version": 2\n  }\n },\n "nbformat": 4\n}',
        ),
        # one line stays one line
        (
            '{"metadata": {"a": 1}, "cells": []}',
            '{"metadata": {"a": 1, "timeback": {"schema_version": 2, "run": {"id": "r"}}}, '
            '"cells": []}',
        ),
        # a section there is replaced in place; of a repeated key, the one readers keep
        (
            '{"metadata": {"timeback": 1, "z": 0, "timeback": {"old": true}}}',
            '{"metadata": {"timeback": 1, "z": 0, "timeback": {"run": {"id": "r"}, '
            '"schema_version": 2}}}',
        ),
        # what cannot be edited in place: the caller saves the model instead
        ('{"cells": []}', None),
        ('["not", "a", "notebook"]', None),
        ('{"metadata": {"a": 1} "cells": []}', None),
    ],
    ids=["nbformat", "empty-metadata", "one-line", "replace-last", "no-metadata", "list", "bad"],
)
def test_the_section_is_put_into_the_text_in_its_layout(text, expected):
    try:
        notebook = json.loads(text)
    except ValueError:
        notebook = {}
    assert with_section(text, notebook, SECTION) == expected


def test_a_run_still_waiting_for_its_notebook_write_gets_it_when_the_server_stops(tmp_path):
    """A server stopped within ``metadata_write_delay`` of a run's start (a student's server
    culled right after the first cell) writes the run now: a stateful activity must find its
    run in the file to resume it. Nothing is left pending for the loop to drop."""
    root = tmp_path / "notebooks"
    root.mkdir()
    path = write_notebook(root, "lesson.ipynb", {"activity": LESSON})
    server = Server(
        tmp_path, root, tmp_path / "timeback.sqlite3", "--Timeback.metadata_write_delay=600"
    )
    try:
        server.open(path)
        run_id = wait(lambda: stored_run(server.store), what="the run to start")
        assert notebook_run(root, path) is None  # its write waits for a browser
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
    finally:
        server.stop()
    meta = notebook_run(root, path)
    assert meta is not None and meta["id"] == run_id, server.log_path.read_text()[-3000:]
    assert "Task was destroyed" not in server.log_path.read_text()
