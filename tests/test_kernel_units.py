"""The kernel side's parts without a kernel: policy, ticket finding, the bridge's answers,
activities from timeback.config.json, and the session and widget over the real local recorder."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from timeback_jupyter.kernel.activities import ConfigActivityError, activity_for
from timeback_jupyter.kernel.bridge import (
    KERNEL_HEADER,
    TOKEN_HEADER,
    Bridge,
    ServerRefused,
    ServerUnavailable,
    kernel_id_of,
    read_ticket,
)
from timeback_jupyter.kernel.policy import blocker, exercise_totals
from timeback_jupyter.kernel.session import KernelSession, TimebackError
from timeback_jupyter.kernel.standalone import LocalBackend
from timeback_jupyter.kernel.views import completion_line, duration
from timeback_jupyter.kernel.widget import CompletionButton
from timeback_jupyter.model import Activity, CourseRef, InvalidInput

from .conftest import QUIZ, STUDENT

RUN = {"status": "active", "exercises": {"q1": True, "q2": False}, "active_seconds": 90.0}


# ---- policy and views ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "declared", "options", "reason"),
    [
        (None, [], {}, "the activity has not started yet: run the notebook's first cells"),
        ({**RUN, "status": "completed"}, [], {}, "already completed"),
        (RUN, [], {}, None),
        (RUN, ["q1", "q2", "q3"], {}, "answer q3 first"),
        (RUN, ["a", "b", "c", "d", "e"], {}, "answer a, b, c and 2 more first"),
        (RUN, ["q3"], {"require": "nothing"}, None),
        (RUN, [], {"require": "correct"}, "get q2 right first"),
        (RUN, [], {"min_active_minutes": 5}, "keep working: about 4 more minutes needed"),
        (RUN, [], {"min_active_minutes": 1.5}, None),
    ],
)
def test_completion_policy(run, declared, options, reason):
    assert blocker(run, declared, **options) == reason


def test_declared_but_unanswered_exercises_count_as_questions_not_answered():
    assert exercise_totals(RUN, ["q1", "q2", "q3"]) == (3, 1)
    assert exercise_totals(RUN, []) == (2, 1)
    assert exercise_totals({"exercises": {}}, []) is None


def test_views():
    assert [duration(s) for s in (0, 59.9, 61, 3725)] == ["0 s", "59 s", "1 min 01 s", "1 h 02 min"]
    answer = {
        "metrics": {
            "xpEarned": 2.5,
            "totalQuestions": 3,
            "correctQuestions": 2,
            "pctComplete": 100,
        },
        "xp_capped": True,
    }
    assert completion_line(answer) == (
        "2.5 XP, 2/3 questions correct, 100% complete (XP capped at 1 per focused minute)"
    )


# ---- finding the server ----------------------------------------------------------------------


def test_the_ticket_is_found_beside_the_connection_file(tmp_path):
    connection = tmp_path / "kernel-0b7e1f4e-8d43.json"
    assert kernel_id_of(connection) == "0b7e1f4e-8d43"
    with pytest.raises(ServerUnavailable, match=r"\(no kernel-0b7e1f4e-8d43.json in "):
        read_ticket(connection)
    (tmp_path / "timeback").mkdir()
    ticket_file = tmp_path / "timeback" / connection.name
    ticket_file.write_text('{"url": "http://127.0.0.1:1/", "kernel_id": "k"}')
    with pytest.raises(ServerUnavailable, match="is not a timeback kernel ticket"):
        read_ticket(connection)
    ticket_file.write_text('{"url": "http://127.0.0.1:1/", "kernel_id": "k", "token": "t0k"}')
    ticket = read_ticket(connection)
    assert (ticket.url, ticket.kernel_id, ticket.token) == ("http://127.0.0.1:1/", "k", "t0k")
    assert "t0k" not in repr(ticket)
    with pytest.raises(ServerUnavailable, match="names no kernel id"):
        kernel_id_of(tmp_path / "tmpabc.json")


class _Answers(BaseHTTPRequestHandler):
    """A real HTTP server answering what a Jupyter server may answer a kernel."""

    seen: list = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.seen.append((self.path, dict(self.headers), body))
        status, payload = {
            "/base/timeback/api/kernel/run": (200, b'{"run": null}'),
            "/base/timeback/api/kernel/end": (403, b'{"message": "bad token", "reason": null}'),
            "/base/timeback/api/kernel/complete": (
                409,
                b'{"message": "no run is open", "reason": null}',
            ),
        }.get(self.path, (404, b"<html>not found</html>"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_the_bridge_turns_answers_into_one_line_errors(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = tmp_path / "kernel-k1.json"
        (tmp_path / "timeback").mkdir()
        url = f"http://127.0.0.1:{server.server_port}/base/"
        ticket = {"url": url, "kernel_id": "k1", "token": "s3cret"}
        (tmp_path / "timeback" / "kernel-k1.json").write_text(json.dumps(ticket))
        bridge = Bridge(connection)
        assert bridge.post("run", {"activity": None}) == {"run": None}
        route, headers, body = _Answers.seen[-1]
        assert route == "/base/timeback/api/kernel/run"
        assert headers[KERNEL_HEADER] == "k1" and headers[TOKEN_HEADER] == "s3cret"
        assert body == {"activity": None}
        with pytest.raises(ServerUnavailable, match="refused this kernel's token"):
            bridge.post("end", {})
        with pytest.raises(ServerRefused, match="^no run is open$") as refused:
            bridge.post("complete", {})
        assert refused.value.status == 409
        with pytest.raises(ServerRefused, match="^HTTP 404$"):
            bridge.post("exercises", {})
    finally:
        server.shutdown()
        server.server_close()
        bridge.close()
    # nothing listens there any more
    with pytest.raises(ServerUnavailable, match=rf"the Jupyter server at {url} does not answer"):
        Bridge(connection).post("run", {})


# ---- timeback.config.json --------------------------------------------------------------------


def write_config(folder, activities):
    (folder / "timeback.config.json").write_text(
        json.dumps({"jupyter": {"activities": activities}})
    )


def test_activities_from_timeback_config(tmp_path):
    deep = tmp_path / "unit1" / "week2"
    deep.mkdir(parents=True)
    assert activity_for("unit1/week2/quiz.ipynb", deep) is None  # no file at all
    write_config(
        tmp_path,
        [
            {**QUIZ, "notebook": "unit1/week2/quiz.ipynb", "id": "by-path"},
            {**QUIZ, "notebook": "lesson.ipynb", "id": "by-name"},
            {**QUIZ, "id": "anyone"},
        ],
    )
    found = {nb: activity_for(nb, deep) for nb in ("unit1/week2/quiz.ipynb", "x/lesson.ipynb")}
    assert {nb: a[0].id for nb, a in found.items()} == {
        "unit1/week2/quiz.ipynb": "by-path",
        "x/lesson.ipynb": "by-name",
    }
    assert activity_for("other.ipynb", deep)[0].id == "anyone"
    assert activity_for(None, deep)[0].id == "anyone"
    assert activity_for("other.ipynb", deep)[1] == tmp_path / "timeback.config.json"

    write_config(tmp_path, [{**QUIZ, "id": "one"}, {**QUIZ, "id": "two"}])
    assert activity_for("other.ipynb", deep) is None  # two for anyone: none is this one's
    write_config(tmp_path, [{**QUIZ, "notebook": "q.ipynb"}, {**QUIZ, "notebook": "q.ipynb"}])
    with pytest.raises(ConfigActivityError, match="2 activities name q.ipynb: keep one"):
        activity_for("q.ipynb", deep)
    write_config(tmp_path, [{**QUIZ, "course": {"subject": "Math"}}])
    with pytest.raises(ConfigActivityError, match="needs a grade"):
        activity_for("q.ipynb", deep)
    write_config(tmp_path, {"not": "a list"})
    with pytest.raises(ConfigActivityError, match="'jupyter.activities' must be a list"):
        activity_for("q.ipynb", deep)


# ---- the session and the widget over the local recorder --------------------------------------


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A session recording locally, as in a kernel no server started."""
    monkeypatch.chdir(tmp_path)
    said = []
    backends = []

    def make(session=None):
        def choose(_):
            backend = LocalBackend(
                store_path=tmp_path / "standalone.sqlite3",
                environ={"TIMEBACK_STUDENT_EMAIL": STUDENT},
            )
            backends.append(backend)
            return backend

        return KernelSession(choose=choose, say=said.append)

    yield make, backends
    for backend in backends:
        backend.close()


QUIZ_ACTIVITY = Activity("fractions-quiz", "Fractions quiz", CourseRef("Math", 3))


def test_session_starts_marks_and_completes_once(local, tmp_path):
    make, _ = local
    session = make()
    with pytest.raises(TimebackError, match="no activity is declared for this kernel: give one"):
        session.start()
    write_config(tmp_path, [QUIZ])
    run = session.start()["run"]
    assert run["activity"]["id"] == "fractions-quiz"
    assert session.start(QUIZ_ACTIVITY)["resumed"] is True

    session.declare(["q1", "q2", "q3"])
    session.mark("q1", False)
    session.mark("q1", True)  # a re-run of the cell: replaced, not counted twice
    assert session.mark("q2", False)["exercises"] == {"q1": True, "q2": False}
    with pytest.raises(TimebackError, match="exercise: required"):
        session.mark(" ", True)
    with pytest.raises(TimebackError, match="correct: must be True or False"):
        session.mark("q1", "yes")

    answer = session.complete({})
    assert answer["already_completed"] is False
    assert (answer["metrics"]["totalQuestions"], answer["metrics"]["correctQuestions"]) == (3, 1)
    again = session.complete({"total": 9, "correct": 9})
    assert again["already_completed"] is True and again["event_id"] == answer["event_id"]
    # started again with no new attempt asked for: the completed run, not a second one
    assert session.start(QUIZ_ACTIVITY)["run"]["status"] == "completed"
    with pytest.raises(TimebackError, match="is completed: exercises can no longer change"):
        session.mark("q3", True)
    fresh = session.start(QUIZ_ACTIVITY, new_attempt=True)["run"]
    assert fresh["attempt"] == 2 and fresh["id"] != run["id"]


def test_a_stateful_run_resumes_in_the_next_kernel(local):
    make, backends = local
    lesson = Activity("lesson", "Lesson", CourseRef(code="MATH-3"), stateful=True)
    first = make()
    run_id = first.start(lesson)["run"]["id"]
    first.mark("q1", True)
    assert first.end()["run"]["status"] == "ended"
    with pytest.raises(TimebackError, match="nothing to end"):
        first.end()
    assert first.current().run["status"] == "ended"
    assert first.mark("q2", False)["id"] == run_id  # answering resumes the ended run
    first.end()
    backends[0].close()  # the kernel exits

    second = make()
    answer = second.start(lesson)
    assert (answer["run"]["id"], answer["resumed"]) == (run_id, True)
    assert second.complete({})["metrics"]["totalQuestions"] == 2


def test_an_ended_single_session_run_completes_as_it_is_and_new_work_is_a_new_attempt(local):
    make, _ = local
    session = make()
    first = session.start(QUIZ_ACTIVITY)["run"]
    session.end()
    done = session.complete({})
    assert done["run"]["id"] == first["id"] and done["run"]["status"] == "completed"

    session = make()
    first = session.start(QUIZ_ACTIVITY)["run"]
    session.end()
    second = session.mark("q1", True)
    assert second["id"] != first["id"] and second["attempt"] == 3


def test_the_widget_waits_for_the_policy_then_completes(local):
    make, backends = local
    session = make()
    session.start(QUIZ_ACTIVITY)
    widget = CompletionButton(exercises=["q1", "q2"], require="correct", session=session)
    assert widget.button.disabled and widget.message.value == "Not yet: get q1, q2 right first"
    assert widget.title.value == "<b>Fractions quiz (fractions-quiz, Math G3, single-session)</b>"
    session.mark("q1", True)
    session.mark("q2", True)  # views refresh after every change
    assert not widget.button.disabled and widget.message.value == ""
    assert widget.details.value.startswith("2 of 2 exercises answered, 2 correct · ")

    backends[0].store.close()  # a failure while clicking shows in the widget, never vanishes
    widget.button.click()
    assert widget.message.value.startswith("Could not complete: ")
    assert "the store is closed" in widget.message.value
    assert not widget.button.disabled
    widget.refresh()
    assert widget.message.value.startswith("Timeback is not recording: ")
    assert widget.button.disabled


def test_the_widget_refuses_a_bad_policy():
    with pytest.raises(InvalidInput, match="require: must be one of nothing, attempted, correct"):
        CompletionButton(require="all", session=KernelSession(choose=lambda _: None))
    with pytest.raises(InvalidInput, match="min_active_minutes: must be a non-negative number"):
        CompletionButton(min_active_minutes=-1, session=KernelSession(choose=lambda _: None))
