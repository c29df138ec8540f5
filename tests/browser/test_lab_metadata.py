"""The lab extension saves metadata.timeback by its schema: a version 1 notebook is upgraded
with every key others put there kept, and a section of a newer version is never written over."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nbformat

from timeback_jupyter.identity import student_key
from timeback_jupyter.notebook_metadata import CURRENT_VERSION

from ..conftest import STUDENT
from .lab import LESSON, open_notebook, saved_timeback, wait

MODEL_JS = "() => window.jupyterapp.shell.currentWidget.model.getMetadata('timeback')"
SET_JS = "s => window.jupyterapp.shell.currentWidget.model.sharedModel.setMetadata('timeback', s)"


def test_lab_save_upgrades_version_1_keeps_unknown_keys_and_leaves_a_newer_one(
    start_lab, page, tmp_path: Path
):
    root = tmp_path / "root"
    root.mkdir()
    path = "v1-lesson.ipynb"
    # A lesson begun on another server under schema version 1: the run resumes with its id.
    run = {"id": str(uuid.uuid4()), "student": student_key(STUDENT), "status": "ended",
           "attempt": 2, "origin": path, "grader": {"seen": True}}  # fmt: skip
    activity = {**LESSON, "author_note": "unit 4"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nb.metadata["timeback"] = {"schema_version": 1, "activity": activity, "run": run,
                               "reviewer": {"name": "ms-k"}}  # fmt: skip
    (root / path).write_text(nbformat.writes(nb))
    lab = start_lab(root)
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)

    open_notebook(page, lab, path)
    saved = wait(
        lambda: (s := saved_timeback(root, path)).get("schema_version") == CURRENT_VERSION and s,
        what="the upgraded section saved by the lab extension",
        seen=lambda: saved_timeback(root, path),
    )
    assert saved == {
        "schema_version": CURRENT_VERSION,
        "activity": activity,
        "run": {**run, "status": "active"},
        "reviewer": {"name": "ms-k"},
    }

    # The section in the document turns into a newer version's (another timeback-jupyter, a
    # collaborator): the extension's next write, on the next presence answer, leaves it alone.
    newer = {"schema_version": CURRENT_VERSION + 1, "activity": {"id": "elsewhere"},
             "future": [1, 2]}  # fmt: skip
    page.evaluate(SET_JS, newer)

    def refused() -> bool:
        page.wait_for_timeout(200)  # Playwright delivers the page's events while it is called
        return any("made by a newer timeback-jupyter" in w for w in warnings)

    wait(
        refused,
        what="the extension to refuse writing over the newer section",
        seen=lambda: warnings,
    )
    assert page.evaluate(MODEL_JS) == newer
    on_disk = json.loads((root / path).read_text())["metadata"]["timeback"]
    assert on_disk == saved  # nor saved anything
