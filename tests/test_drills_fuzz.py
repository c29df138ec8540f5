"""Drill: garbage in. Hypothesis throws bodies, ids, headers and notebook metadata at a real
`jupyter server` with the extension; every answer is a 2xx or a 4xx carrying a one-line
message, never a 5xx, and the server neither crashes nor logs a traceback.

The REST fuzz mixes valid and invalid: real run ids and random ones, the real kernel token and
forged ones, known fields with values of every JSON type, unknown fields, non-JSON bytes and
bodies over the size limit. The metadata fuzz rewrites a notebook that has a kernel session
open (so the server's own background start of runs sees every variant too) and asks the REST
API to start and report on it.

`make test` runs a short form; TIMEBACK_DRILLS=full runs ten times more examples.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timeback_jupyter.server.bridge import KERNEL_HEADER, TOKEN_HEADER

from .conftest import LESSON, QUIZ, write_notebook
from .jupyter_process import Server, wait

FULL = os.environ.get("TIMEBACK_DRILLS") == "full"
SCALE = 10 if FULL else 1
FUZZ_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    "derandomize": not FULL,  # the short form is the same every run; the full one explores
}

FIELDS = [
    "path", "activity", "client", "source", "visible", "focused", "idle_ms", "leaving", "_xsrf",
    "xp", "total", "correct", "mastered", "pct", "exercise", "timeout", "id", "name", "course",
    "stateful", "subject", "grade", "code",
]  # fmt: skip

TRICKY = ["", " ", "lesson.ipynb", "quiz.ipynb", "../../etc/passwd", "/abs.ipynb", "api",
          "jupyterlab", "Math", "q1", "\x00", "💥" * 3, "a" * 300]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(TRICKY)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
activities = st.fixed_dictionaries(
    {},
    optional={
        "id": json_scalars,
        "name": json_scalars,
        "course": json_values
        | st.fixed_dictionaries({}, optional={"subject": json_scalars, "grade": json_scalars})
        | st.fixed_dictionaries({}, optional={"code": json_scalars}),
        "stateful": json_scalars,
    },
)


@st.composite
def near_valid_activities(draw: st.DrawFn) -> Any:
    """A valid activity with one part changed or missing: where validation has to be exact."""
    activity = json.loads(json.dumps(draw(st.sampled_from([QUIZ, LESSON]))))
    key = draw(st.sampled_from(["id", "name", "course", "stateful", "subject", "grade", None]))
    if key in ("subject", "grade"):
        activity["course"][key] = draw(json_scalars)
    elif key is not None:
        if draw(st.booleans()):
            activity[key] = draw(json_values)
        else:
            activity.pop(key, None)
    return activity


any_activity = near_valid_activities() | activities | json_values

# What each route accepts: most bodies keep to these (so validation goes deep), some do not.
ROUTE_FIELDS = {
    "status": [],
    "flush": ["timeout"],
    "runs": ["path", "activity", "client"],
    "runs/{run}": [],
    "runs/{run}/end": [],
    "runs/{run}/complete": ["xp", "total", "correct", "mastered", "pct"],
    "runs/{run}/exercises": ["exercise", "correct"],
    "presence": ["path", "source", "visible", "focused", "idle_ms", "leaving", "_xsrf"],
    "kernel/run": ["activity"],
    "kernel/end": [],
    "kernel/complete": ["xp", "total", "correct", "mastered", "pct"],
    "kernel/exercises": ["exercise", "correct"],
}


def bodies(route: str) -> st.SearchStrategy[bytes]:
    allowed = ROUTE_FIELDS[route]
    keys = st.sampled_from(allowed) if allowed else st.sampled_from(FIELDS)
    values = json_values | any_activity | json_scalars
    return (
        st.dictionaries(keys, values, max_size=len(allowed) + 1).map(_dump)
        | st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(_dump)
        | json_values.map(_dump)
        | st.binary(max_size=64)
        | st.just(b"{" * 5)
        | st.just(b'{"path": "' + b"x" * 70_000 + b'"}')  # over the body limit
        | st.just(b"")
    )


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity included, as a sloppy client sends


ROUTES = [
    ("GET", "status"),
    ("POST", "flush"),
    ("POST", "runs"),
    ("GET", "runs/{run}"),
    ("POST", "runs/{run}/end"),
    ("POST", "runs/{run}/complete"),
    ("POST", "runs/{run}/exercises"),
    ("POST", "presence"),
    ("GET", "kernel/run"),
    ("POST", "kernel/run"),
    ("POST", "kernel/end"),
    ("POST", "kernel/complete"),
    ("POST", "kernel/exercises"),
    ("PUT", "runs"),  # no such method: Jupyter's 405 must keep the JSON error shape
    ("DELETE", "runs/{run}"),
]


class Target:
    """The server under fuzz and what it knows: a live run, a kernel and its token."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "notebooks"
        self.root.mkdir()
        write_notebook(self.root, "quiz.ipynb", {"activity": QUIZ})
        write_notebook(self.root, "lesson.ipynb", {"activity": LESSON})
        write_notebook(self.root, "fuzz.ipynb")
        self.server = Server(tmp, self.root, tmp / "timeback.sqlite3")
        http = self.server.http
        self.run_id = http.post("/timeback/api/runs", json={"path": "quiz.ipynb"}).json()["run"][
            "id"
        ]
        session = self.server.open("lesson.ipynb")
        self.kernel_id = session["kernel"]["id"]
        token_file = self.server.runtime / "timeback" / f"kernel-{self.kernel_id}.json"
        token = wait(lambda: token_file.exists() and json.loads(token_file.read_text()),
                     what="the kernel token file")  # fmt: skip
        self.kernel_token = token["token"]
        self.fuzz_session = self.server.open("fuzz.ipynb")
        self.log = next(tmp.glob("server-*.log"))

    def call(self, method: str, route: str, data: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.server.http.request(
            method, f"/timeback/api/{route}", content=data if method in ("POST", "PUT") else None,
            headers=headers,
        )  # fmt: skip


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = Target(tmp_path_factory.mktemp("fuzz"))
    try:
        yield t
    finally:
        t.server.stop()
    log = t.log.read_text()
    # The server's own failures, not a kernel's (a kernel stopped while it starts prints one).
    crash = re.search(
        r"Uncaught exception|Exception in callback|exception was never retrieved", log
    )
    assert crash is None, log[max(0, crash.start() - 2000) :][:6000] if crash else ""
    assert not re.search(r"\] 5\d\d [A-Z]+ /", log), "a request got a 5xx"


def check_answer(r: httpx.Response, what: str) -> None:
    assert 200 <= r.status_code < 300 or 400 <= r.status_code < 500, (
        f"{what} -> {r.status_code}: {r.text[:500]}"
    )
    if r.status_code >= 400:
        answer = r.json()
        assert isinstance(answer.get("error"), str) and answer["error"].strip(), (what, answer)
        assert "\n" not in answer["error"], (what, answer)
        assert answer.get("status") == r.status_code
    else:
        assert isinstance(r.json(), dict)


run_ids = st.sampled_from(["{real}", "{random}"]) | st.text(min_size=1, max_size=60)


@settings(max_examples=300 * SCALE, **FUZZ_SETTINGS)
@given(
    route=st.sampled_from(ROUTES),
    draw=st.data(),
    run=run_ids,
    kernel=st.sampled_from(["real", "forged", "none", "wrong-kernel"]),
)
def test_rest_api_answers_garbage_with_a_4xx_and_a_message(target, route, draw, run, kernel):
    method, template = route
    data = draw.draw(bodies(template), label="body")
    if run == "{real}":
        run = target.run_id
    elif run == "{random}":
        run = str(uuid.uuid4())
    path = template.replace("{run}", urllib.parse.quote(run, safe=""))
    headers = {"Content-Type": "application/json"}
    if kernel != "none":
        headers[KERNEL_HEADER] = str(uuid.uuid4()) if kernel == "wrong-kernel" else target.kernel_id
        headers[TOKEN_HEADER] = target.kernel_token if kernel == "real" else "forged-token"
    r = target.call(method, path, data, headers)
    check_answer(r, f"{method} {path} {data[:200]!r}")


timeback_sections = json_values | st.fixed_dictionaries(
    {},
    optional={
        "schema_version": json_scalars,
        "activity": any_activity,
        "run": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "id": st.uuids().map(str) | json_scalars,
                "student": json_scalars,
                "status": st.sampled_from(["active", "ended", "completed"]) | json_scalars,
                "attempt": json_scalars,
                "origin": json_scalars,
            },
        ),
    },
)


@settings(max_examples=80 * SCALE, **FUZZ_SETTINGS)
@given(section=timeback_sections, broken=st.sampled_from([None, None, None, b"{", b"\xff\xfe"]))
def test_notebook_metadata_garbage_never_breaks_the_server(target, section, broken):
    notebook = target.root / "fuzz.ipynb"
    if broken is not None:
        notebook.write_bytes(broken)
    else:
        nb = nbformat.v4.new_notebook()
        nb.metadata["timeback"] = section
        notebook.write_text(json.dumps(nb, allow_nan=True))
    http = target.server.http
    for client in ("api", "jupyterlab"):
        r = http.post("/timeback/api/runs", json={"path": "fuzz.ipynb", "client": client})
        check_answer(r, f"start with {client}: {section!r}")
    r = http.post(
        "/timeback/api/presence",
        json={"path": "fuzz.ipynb", "source": "tab", "visible": True, "focused": True},
    )
    check_answer(r, f"presence: {section!r}")
    assert http.get("/api/contents").status_code == 200  # Jupyter itself is fine


def test_a_long_run_id_gets_the_json_error_shape(target):
    r = target.server.http.get(f"/timeback/api/runs/{'x' * 101}")
    assert r.status_code == 400
    assert "is not a UUID" in r.json()["error"]


def test_an_error_message_quotes_the_input_as_given(target):
    r = target.server.http.get("/timeback/api/runs/50%25")
    assert r.status_code == 400
    assert "'50%'" in r.json()["error"], r.json()


def test_an_error_message_stays_on_one_line(target):
    r = target.server.http.post("/timeback/api/flush", content=b'{"\\n": null}')
    assert r.status_code == 400
    assert "\n" not in r.json()["error"], r.json()


def test_the_server_is_still_well_after_the_fuzz(target):
    """Runs last in this module (pytest keeps file order): alive, recording, no 5xx logged."""
    status = target.server.http.get("/timeback/api/status")
    assert status.status_code == 200
    assert status.json()["recording"] is True, status.json()
    assert target.server.proc.poll() is None
