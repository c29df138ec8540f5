"""A stateful run survives the notebook moving to another server: the runId travels in the file."""

from __future__ import annotations

import shutil
from pathlib import Path

from .lab import LESSON, open_notebook, run_cell, saved_timeback, wait, wait_prompt, write_notebook


def test_run_resumes_on_another_server(start_lab, browser, standin, tmp_path: Path):
    first_root, second_root = tmp_path / "monday", tmp_path / "wednesday"
    first_root.mkdir()
    second_root.mkdir()
    path = write_notebook(first_root, "lesson.ipynb", LESSON, ["half = 1 / 2\nhalf"])

    monday = start_lab(first_root)
    context = browser.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    open_notebook(page, monday, path)
    run_id = wait(lambda: saved_timeback(first_root, path).get("run", {}).get("id"), what="run")
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    context.close()
    monday.flush()
    monday.stop()

    # Another machine: its own store has never heard of this run; only the file knows it.
    shutil.copy(first_root / path, second_root / path)
    wednesday = start_lab(second_root, tmp_path / "another-store.sqlite3")
    context = browser.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    open_notebook(page, wednesday, path)
    page.locator(".tb-StatusItem", has_text="Fractions lesson").wait_for()
    page.click(".tb-StatusItem")
    cell = page.locator('.tb-RunPanel tr[data-timeback="run-id"] td')
    cell.wait_for()
    assert cell.inner_text() == run_id
    run = wednesday.run(run_id)
    assert run["attempt"] == 1 and run["live"] is True
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    wait(lambda: wednesday.run(run_id)["active_seconds"] > 0, what="time on wednesday")
    context.close()

    assert wednesday.flush()["report"]["remaining"] == 0
    sessions = {e["session"] for e in standin.received}
    assert sessions == {f"urn:uuid:{run_id}"}
    senders = {e["id"] for e in standin.received}
    assert len(senders) == len(standin.received)  # nothing delivered twice
