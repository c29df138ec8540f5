"""The extension's operations without a Jupyter server: a real store on a SQLite file, a real
tracker and delivery, and notebook files kept in a dict behind the service's port."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import uuid
from typing import Any

import pytest

from timeback_jupyter.config import Timeback, default_app_config
from timeback_jupyter.delivery import Drainer, LocalSink
from timeback_jupyter.identity import Student, actor_for
from timeback_jupyter.model import Activity, InvalidInput
from timeback_jupyter.server.errors import NotebookError, ServiceError, StoreFailure
from timeback_jupyter.server.service import NotebookFiles, TimebackService
from timeback_jupyter.store import Store
from timeback_jupyter.tracker import Tracker

from .conftest import LESSON, QUIZ

REPORT = {"visible": True, "focused": True, "idle_seconds": 0.0, "leaving": False}


class MemoryNotebooks:
    """Notebook files as the service sees them: each path's ``metadata.timeback`` (None for a
    notebook with none); a path missing is a file that cannot be read."""

    def __init__(self, **sections: dict[str, Any] | None) -> None:
        self.sections = dict(sections)
        self.writes: list[tuple[str, dict[str, Any]]] = []

    async def read(self, path: str) -> dict[str, Any] | None:
        if path not in self.sections:
            raise NotebookError(f"{path}: cannot be read as a notebook (no such file)")
        section = self.sections[path]
        if section is not None and not isinstance(section, dict):
            raise NotebookError(f"{path}: metadata.timeback must be an object")
        return copy.deepcopy(section)

    async def write(self, path: str, section: dict[str, Any]) -> bool:
        if self.sections.get(path) == section:
            return False
        self.sections[path] = copy.deepcopy(section)
        self.writes.append((path, section))
        return True

    def activity(self, section: dict[str, Any], path: str) -> Activity:
        try:
            return Activity.from_dict(section.get("activity"), "metadata.timeback.activity")
        except InvalidInput as err:
            raise NotebookError(f"{path}: {err}") from None


class Heard:
    def __init__(self) -> None:
        self.changed: list[str] = []
        self.renamed: list[tuple[str, str]] = []


@pytest.fixture
def settings() -> Timeback:
    return Timeback(heartbeat_interval=15.0, metadata_write_delay=0.05, student_email="a@b.edu")


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "timeback.sqlite3") as s:
        yield s


@pytest.fixture
def notebooks() -> NotebookFiles:
    return MemoryNotebooks(
        **{
            "quiz.ipynb": {"activity": QUIZ},
            "lesson.ipynb": {"activity": LESSON},
            "plain.ipynb": None,
            "bad.ipynb": {"activity": {"id": "x"}},
        }
    )


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def service(settings, store, notebooks, heard) -> TimebackService:
    svc = TimebackService(
        settings,
        notebooks,
        on_changed=heard.changed.append,
        on_renamed=lambda old, new: heard.renamed.append((old, new)),
    )
    student = Student("a@b.edu")
    svc.store = store
    svc.tracker = Tracker(
        store=store,
        settings=settings,
        app_config=default_app_config(),
        student=student,
        actor=actor_for(student, "https://api.staging.alpha-1edtech.ai", local=True),
        notebook_changed=svc.notebook_changed,
    )
    return svc


async def refused(status: int, fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ServiceError) as err:
        result = fn(*args, **kwargs)
        if asyncio.iscoroutine(result):
            await result
    assert err.value.status == status, err.value
    return str(err.value)


@pytest.mark.asyncio
async def test_a_notebook_run_starts_from_its_metadata_and_is_written_back(
    service, notebooks, heard
):
    answer = await service.start("quiz.ipynb")
    run = answer["run"]
    assert run["activity"]["id"] == QUIZ["id"] and run["path"] == "quiz.ipynb"
    assert answer["resumed"] is False
    assert answer["metadata"]["run"]["id"] == run["id"]
    assert heard.changed == ["quiz.ipynb"]
    # no browser looks after it: after metadata_write_delay the run goes into the file
    assert notebooks.writes == []
    await asyncio.sleep(0.2)
    assert notebooks.writes == [("quiz.ipynb", answer["metadata"])]
    # starting again resumes it, and writes nothing more
    again = await service.start("quiz.ipynb")
    assert again["run"]["id"] == run["id"] and again["resumed"] is True
    await asyncio.sleep(0.2)
    assert len(notebooks.writes) == 1


@pytest.mark.asyncio
async def test_a_browser_writes_the_metadata_itself(service, notebooks):
    answer = await service.start("lesson.ipynb", browser=True)
    assert answer["run"]["activity"]["id"] == LESSON["id"]
    await asyncio.sleep(0.2)
    assert notebooks.writes == []
    # a tab reporting a notebook the server started takes the write from the server too
    await service.start("quiz.ipynb")
    await service.presence("quiz.ipynb", "tab-1", **REPORT)
    await asyncio.sleep(0.2)
    assert notebooks.writes == []


@pytest.mark.asyncio
async def test_what_a_notebook_declares_decides_the_start(service):
    assert await service.start("plain.ipynb") is None  # declares nothing: no run, no error
    message = await refused(400, service.start, "bad.ipynb")
    assert message.startswith("bad.ipynb: metadata.timeback.activity")
    assert "cannot be read as a notebook" in await refused(400, service.start, "gone.ipynb")
    # an activity given starts the run whatever the file says, or even with no file
    answer = await service.start("gone.ipynb", activity=QUIZ)
    assert answer["run"]["activity"]["id"] == QUIZ["id"]
    answer = await service.start("bad.ipynb", activity=Activity.from_dict(LESSON))
    assert answer["run"]["activity"]["id"] == LESSON["id"]
    message = await refused(400, service.start, "plain.ipynb", activity={"id": "x"})
    assert message.startswith("activity.course: ")


@pytest.mark.asyncio
async def test_a_completed_run_is_answered_until_a_new_attempt_is_asked(service, heard):
    run_id = (await service.start("quiz.ipynb"))["run"]["id"]
    completed = service.complete(run_id, xp_earned=0, pct_complete=100)
    assert completed["run"]["status"] == "completed" and completed["already_completed"] is False
    assert completed["event_id"]
    assert service.complete(run_id)["already_completed"] is True
    # a re-run cell or a reload asks again: the completed run is answered, nothing restarts
    again = await service.start("quiz.ipynb")
    assert again["run"]["id"] == run_id and again["resumed"] is False
    assert "ask for a new attempt" in again["note"]
    assert service.open_run("quiz.ipynb") is None and service.closed("quiz.ipynb")
    fresh = await service.start("quiz.ipynb", new_attempt=True)
    assert fresh["run"]["id"] != run_id and fresh["run"]["attempt"] == 2
    assert service.open_run("quiz.ipynb") == fresh["run"]["id"]
    assert heard.changed.count("quiz.ipynb") == 3  # started, completed, started


@pytest.mark.asyncio
async def test_presence_and_leave_on_the_notebook_run(service):
    assert await service.presence("quiz.ipynb", "tab-1", **REPORT) is None  # no run yet
    run_id = (await service.start("quiz.ipynb", browser=True))["run"]["id"]
    seen = await service.presence("quiz.ipynb", "tab-1", **REPORT)
    assert seen["id"] == run_id and seen["state"] == "active"
    assert seen["metadata"]["run"]["id"] == run_id
    left = await service.presence(
        "quiz.ipynb", "tab-1", visible=False, focused=False, idle_seconds=None, leaving=True
    )
    assert left["id"] == run_id and left["state"] != "active"
    assert list(service.browser_paths) == ["quiz.ipynb"]


@pytest.mark.asyncio
async def test_run_operations_and_their_refusals(service, heard):
    run_id = (await service.start("lesson.ipynb"))["run"]["id"]
    assert service.get(run_id)["run"]["id"] == run_id
    marked = service.exercise(run_id, "q1", True)
    assert marked["run"]["exercises"] == {"q1": True}
    assert "correct" in await refused(400, service.exercise, run_id, "q2", "yes")
    assert service.run_of("lesson.ipynb") == run_id
    ended = service.end(run_id)["run"]
    assert ended["status"] == "ended" and ended["live"] is False
    # the notebook still shows the run it ended, for the kernel to see
    assert service.run_of("lesson.ipynb") == run_id
    shown = service.describe_notebook("lesson.ipynb")
    assert shown["run"]["id"] == run_id and shown["status"]["recording"] is True
    assert "store_path" not in shown["status"]
    assert heard.changed == ["lesson.ipynb"] * 3  # started, exercise marked, ended
    assert "is not a UUID" in await refused(400, service.get, "50%")
    assert "unknown run" in await refused(404, service.get, str(uuid.uuid4()))
    assert "start one first" in await refused(409, service.run_of, "quiz.ipynb")
    completed = service.complete(run_id)
    assert completed["run"]["status"] == "completed"
    assert "completed" in await refused(409, service.exercise, run_id, "q1", False)


@pytest.mark.asyncio
async def test_kernel_signals_a_close_and_a_rename(service, heard, store):
    assert service.signal("quiz.ipynb", "execute_start", 1.0) is False  # no run to signal
    run_id = (await service.start("quiz.ipynb"))["run"]["id"]
    assert service.signal("quiz.ipynb", "execute_start", 1.0) is True
    service.rename("quiz.ipynb", "renamed.ipynb")
    assert heard.renamed == [("quiz.ipynb", "renamed.ipynb")]
    assert service.open_run("renamed.ipynb") == run_id and service.open_run("quiz.ipynb") is None
    assert store.get_run(run_id).origin == "renamed.ipynb"
    # the kernel shut down: the run ends, and opening the notebook again may start one
    service.notebook_closed("renamed.ipynb")
    assert store.get_run(run_id).status == "ended"
    assert not service.closed("renamed.ipynb") and service.open_run("renamed.ipynb") is None


@pytest.mark.asyncio
async def test_nothing_records_until_a_tracker_and_while_a_problem_says_why(service, settings):
    service.problem = "looking up the student's Timeback user by email"
    message = await refused(503, service.start, "quiz.ipynb")
    assert message == "timeback is not recording: looking up the student's Timeback user by email"
    await refused(503, service.presence, "quiz.ipynb", "tab-1", **REPORT)
    assert service.open_run("quiz.ipynb") is None
    assert service.describe_notebook("quiz.ipynb")["run"] is None
    status = service.status()
    assert status["recording"] is False and status["problem"].startswith("looking up")
    bare = TimebackService(settings, MemoryNotebooks())
    await refused(503, bare.get, str(uuid.uuid4()))
    assert bare.signal("quiz.ipynb", "comm", 1.0) is False
    assert "identity" not in bare.status() and bare.status()["store_path"] == settings.store_path
    assert "not running" in await refused(503, bare.flush, 1.0)
    bare.notebook_closed("quiz.ipynb")  # nothing to end: no error
    bare.rename("a.ipynb", "b.ipynb")


@pytest.mark.asyncio
async def test_a_failing_store_is_a_503_that_says_so(service, store):
    run_id = (await service.start("quiz.ipynb"))["run"]["id"]
    store.close()
    with pytest.raises(StoreFailure) as err:
        service.get(run_id)
    assert err.value.status == 503
    assert str(err.value).startswith("the timeback store failed: ")
    status = service.status(today_start=0.0)
    assert "error" in status["outbox"] and "error" in status["today"]


@pytest.mark.asyncio
async def test_status_and_flush_through_real_delivery(service, store, settings):
    status = service.status(today_start=0.0)
    assert status["recording"] is True and status["sink"] == "local"
    assert status["identity"]["email"] == "a@b.edu" and status["live_runs"] == 0
    assert status["today"]["active_seconds"] == 0
    assert status["store_path"] == settings.store_path
    assert "store_path" not in service.status(public=True)
    run_id = (await service.start("quiz.ipynb"))["run"]["id"]
    service.complete(run_id)
    service.drainer = Drainer(store, LocalSink(), idle_interval=0.05)
    flushed = await service.flush(5.0)
    assert flushed["report"]["error"] is None and flushed["report"]["remaining"] == 0
    assert store.stats()["pending"] == 0 and store.stats()["sent"] >= 1
    assert "delivery" in service.status()


def test_the_service_needs_no_jupyter_server():
    """What handlers call runs without jupyter_server or tornado being imported at all."""
    code = (
        "import sys, timeback_jupyter.server.service\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jupyter_server', 'tornado'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.asyncio
async def test_flush_while_another_process_delivers_is_a_conflict_that_names_it(service, store):
    """Two servers on one store (two named servers sharing a home): the one without the
    store's delivery lease answers a flush 409 with the reason, not an unhandled 500."""
    holder = Drainer(store, LocalSink())
    assert holder._lease.acquire()  # as the other process's drainer holds it
    try:
        service.drainer = Drainer(store, LocalSink(), idle_interval=0.05)
        with pytest.raises(ServiceError) as err:
            await service.flush(1.0)
        assert err.value.status == 409
        assert "already delivering" in str(err.value)
    finally:
        holder._lease.release()
