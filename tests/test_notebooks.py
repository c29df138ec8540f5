"""The example notebooks run top to bottom against a real server and produce the right events;
the server reads and writes their metadata.timeback by its schema (upgrade, refusal, merge)."""

import json
import shutil
import uuid
from pathlib import Path

import nbformat
import pytest

from timeback_jupyter.identity import student_key
from timeback_jupyter.notebook_metadata import CURRENT_VERSION
from timeback_jupyter.store import Store

from .conftest import STUDENT, write_notebook
from .jupyter_process import Server, notebook_run, wait

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples")
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    server = Server(tmp, root, tmp / "timeback.sqlite3")
    yield server
    server.stop()


def code_cells(name: str) -> list[str]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def events_of(store_path: Path, run_id: str) -> list[dict]:
    with Store(store_path) as store:
        return [e for e in store.events() if e["session"] == f"urn:uuid:{run_id}"]


def test_quiz_runs_and_completes_with_its_exercises(lab):
    session = lab.open("fractions-quiz.ipynb")
    shown = lab.run_cells(session["kernel"]["id"], code_cells("fractions-quiz.ipynb"))
    assert not any("ERROR" in text for text in shown), shown
    assert "q1: correct ✓" in "".join(shown)
    # the student presses "Mark complete": what the button does, from the kernel
    done = lab.run_cells(session["kernel"]["id"], ["%timeback complete"])[0]
    assert "ompleted" in done, done
    # the quiz declares 5 expected XP: all right on the first attempt earns 25% more
    assert "6.2 XP: 3/3 correct on the first attempt: the expected 5 XP + 25% bonus" in done
    run = lab.http.get("/timeback/api/status").json()
    assert run["recording"] is True
    runs = wait(lambda: Store(lab.store).list_runs(activity_id="fractions-quiz"), what="the run")
    events = events_of(lab.store, runs[0].id)
    completions = [e for e in events if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    items = {i["type"]: i["value"] for i in completions[0]["generated"]["items"]}
    assert items["totalQuestions"] == 3 and items["correctQuestions"] == 3
    assert items["xpEarned"] == 6.2
    assert any(e["type"] == "TimeSpentEvent" for e in events)


def test_lesson_keeps_its_run_in_the_notebook_and_ends_resumable(lab):
    path = "fractions-lesson.ipynb"
    session = lab.open(path)
    shown = lab.run_cells(session["kernel"]["id"], [*code_cells(path), "%timeback end"])
    assert not any("ERROR" in text for text in shown), shown
    run = wait(lambda: notebook_run(lab.root, path), what="the run in the notebook")
    with Store(lab.store) as store:
        stored = store.get_run(run["id"])
        assert stored is not None and stored.status == "ended"
        assert stored.exercises == {"day1": True, "day2": True, "day3": True}


def test_authoring_guide_shows_every_form_without_a_traceback(lab):
    path = "authoring-guide.ipynb"
    session = lab.open(path)
    shown = lab.run_cells(session["kernel"]["id"], code_cells(path))
    text = "\n".join(shown)
    assert "Traceback" not in text and "ERROR" not in text, text
    assert "usage" in text.lower()  # --help
    with Store(lab.store) as store:
        (run,) = store.list_runs(activity_id="authoring-demo")
        completion = store.get_completion(run.id)
    assert completion is not None
    assert completion["generated"]["extensions"]["pctCompleteApp"] == 100
    assert "0 XP: 1/2 correct, below 80%" in text  # the outcome, and why


def timeback_section(root: Path, path: str) -> dict | None:
    try:  # the server rewrites the file in place: a read may catch it half written
        return json.loads((root / path).read_text())["metadata"].get("timeback")
    except (ValueError, KeyError):
        return None


def test_a_version_1_notebook_is_upgraded_when_the_server_writes_its_run(lab):
    """Written by schema version 1 (with its old spelling ``model``), carrying keys of other
    tools in the section, the activity and the run: the run resumes, the file becomes the
    current version with all of it kept."""
    path = "v1-lesson.ipynb"
    run = {"id": str(uuid.uuid4()), "student": student_key(STUDENT), "status": "ended",
           "attempt": 2, "origin": path, "grader": {"seen": True}}  # fmt: skip
    activity = {"id": "v1-lesson", "name": "Old lesson", "model": "stateful",
                "course": {"subject": "Math", "grade": 4}, "author_note": "unit 4"}  # fmt: skip
    write_notebook(lab.root, path, {"schema_version": 1, "activity": activity, "run": run,
                                    "reviewer": {"name": "ms-k"}})  # fmt: skip
    answer = lab.http.post("/timeback/api/runs", json={"path": path})
    assert answer.status_code == 200, answer.text
    started = answer.json()
    assert started["resumed"] is True and started["run"]["id"] == run["id"]
    assert started["metadata"]["schema_version"] == CURRENT_VERSION
    section = wait(
        lambda: (s := timeback_section(lab.root, path)) and s["schema_version"] != 1 and s,
        what="the upgraded section on disk",
    )
    assert section == {
        "schema_version": CURRENT_VERSION,
        "activity": {"id": "v1-lesson", "name": "Old lesson", "stateful": True,
                     "course": {"subject": "Math", "grade": 4}, "author_note": "unit 4"},
        "run": {**run, "status": "active"},
        "reviewer": {"name": "ms-k"},
    }  # fmt: skip
    nb = nbformat.read(lab.root / path, as_version=4)
    assert [c.source for c in nb.cells] == ["x = 1"]


def test_a_newer_version_is_refused_and_its_file_left_byte_for_byte(lab):
    path = "from-the-future.ipynb"
    newer = CURRENT_VERSION + 1
    section = {"schema_version": newer, "future": {"keep": True},
               "activity": {"id": "future-quiz", "unknown": "shape"}}  # fmt: skip
    write_notebook(lab.root, path, section)
    before = (lab.root / path).read_bytes()
    message = (
        f"made by a newer timeback-jupyter (schema_version {newer}; this one reads up to "
        f"{CURRENT_VERSION}): upgrade timeback-jupyter"
    )
    refused = lab.http.post("/timeback/api/runs", json={"path": path})
    assert refused.status_code == 400
    assert message in refused.text
    # Named by the caller, the activity's run starts; its metadata is not written over the file.
    quiz = {"id": "future-quiz", "name": "Quiz", "course": {"subject": "Math", "grade": 3}}
    started = lab.http.post("/timeback/api/runs", json={"path": path, "activity": quiz})
    assert started.status_code == 200, started.text
    wait(
        lambda: f"{path}: metadata.timeback was {message}" in lab.log_path.read_text(),
        what="the refused write in the server log",
    )
    assert (lab.root / path).read_bytes() == before
