"""The same extension in Notebook 7 (no ILabShell, no status bar): runs, metadata, presence."""

from __future__ import annotations

from pathlib import Path

from .lab import (
    LESSON,
    TOKEN,
    hide,
    open_notebook,
    run_cell,
    saved_timeback,
    show,
    wait,
    wait_prompt,
    write_notebook,
)


def test_notebook7(start_lab, page, tmp_path: Path, artifacts: Path):
    root = tmp_path / "root"
    root.mkdir()
    path = write_notebook(root, "homework.ipynb", LESSON, ["third = 1 / 3\nthird"])
    lab = start_lab(root, None, "--JupyterNotebookApp.expose_app_in_browser=True")
    lab.lab_url = lambda p: f"{lab.url}/notebooks/{p}?token={TOKEN}"  # Notebook 7's page
    open_notebook(page, lab, path)
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"

    run_id = wait(lambda: saved_timeback(root, path).get("run", {}).get("id"), what="saved run")
    run_cell(page, 0)
    wait_prompt(page, 0, 1)
    lab.wait_state(run_id, "active", what="presence from Notebook 7")
    page.screenshot(path=artifacts / "notebook7.png")

    other = hide(page)
    lab.wait_state(run_id, "inactive", what="the hidden tab")
    show(page, other)
    lab.wait_state(run_id, "active", what="the tab back")
