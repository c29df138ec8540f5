"""Drill: garbage in. Hypothesis throws bodies, ids, headers and notebook metadata at a real
`jupyter server` with the extension; every answer is a 2xx or a 4xx carrying a one-line
message, never a 5xx, and the server neither crashes nor logs a traceback.

The REST fuzz mixes valid and invalid: real run ids and random ones, the real kernel token and
forged ones, known fields with values of every JSON type, unknown fields, non-JSON bytes and
bodies over the size limit. The metadata fuzz rewrites a notebook that has a kernel session
open (so the server's own background start of runs sees every variant too) and asks the REST
API to start and report on it. The socket fuzz sends garbage frames down ONE presence socket
(/timeback/api/presence/socket): each gets its answer, a 4xx or a run, and the socket stays open.

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
import websocket  # websocket-client (a jupyter_server dependency): blocking, as hypothesis is
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timeback_jupyter.server.bridge import KERNEL_HEADER, TOKEN_HEADER
from timeback_jupyter.server.presence_socket import MESSAGE_FIELDS
from timeback_jupyter.server.requests import MAX_BODY, normal_path

from .conftest import LESSON, QUIZ, write_notebook
from .jupyter_process import TOKEN, Server, wait

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
    "stateful", "subject", "grade", "code", "require", "min_active_minutes",
]  # fmt: skip

TRICKY = ["", " ", "lesson.ipynb", "quiz.ipynb", "../../etc/passwd", "/abs.ipynb", "api",
          "jupyterlab", "Math", "q1", "\x00", "💥" * 3, "a" * 300]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.just(10**400)  # an int beyond any float: JSON allows it
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
    "runs/{run}/complete": [
        "xp",
        "total",
        "correct",
        "mastered",
        "pct",
        "require",
        "min_active_minutes",
    ],
    "runs/{run}/exercises": ["exercise", "correct"],
    "presence": ["path", "source", "visible", "focused", "idle_ms", "leaving", "_xsrf"],
    "kernel/run": ["activity"],
    "kernel/end": [],
    "kernel/complete": [
        "xp",
        "total",
        "correct",
        "mastered",
        "pct",
        "require",
        "min_active_minutes",
    ],
    "kernel/exercises": ["exercise", "correct"],
}


def _nested(depth: int, array: bool) -> str:
    """JSON nested ``depth`` deep: small in bytes, deep enough to exhaust a recursive parser."""
    return "[" * depth + "]" * depth if array else '{"a":' * depth + "1" + "}" * depth


deep_json = st.builds(_nested, st.sampled_from([2, 999, 1001, 5000, 30_000]), st.booleans())


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
        | deep_json.map(str.encode)
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
        r"Uncaught exception|Exception in callback|exception was never retrieved"
        r"|presence message failed|on close failed",  # the socket's own 500s and failed leaves
        log,
    )
    assert crash is None, log[max(0, crash.start() - 2000) :][:6000] if crash else ""
    assert not re.search(r"\] 5\d\d [A-Z]+ /", log), "a request got a 5xx"


def check_answer(r: httpx.Response, what: str) -> None:
    assert 200 <= r.status_code < 300 or 400 <= r.status_code < 500, (
        f"{what} -> {r.status_code}: {r.text[:500]}"
    )
    if r.status_code >= 400:
        answer = r.json()  # Jupyter's error shape, the specific message on one line
        assert isinstance(answer.get("message"), str) and answer["message"].strip(), (what, answer)
        assert "\n" not in answer["message"], (what, answer)
        assert set(answer) == {"message", "reason"}, (what, answer)
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


# ---- the presence socket ---------------------------------------------------------------------

ANSWER_TIMEOUT = 10.0  # an answer normally takes a millisecond; the machine is shared
SOCKET_URL = "ws://127.0.0.1:{port}/timeback/api/presence/socket"
VALID_REPORT = {"path": "quiz.ipynb", "source": "fuzz-tab", "visible": True, "focused": True,
                "idle_ms": 10}  # fmt: skip
PATHS = ["quiz.ipynb", "lesson.ipynb", "fuzz.ipynb", "nope.ipynb", "../../etc/passwd",
         "/abs.ipynb", "..", "a/../../b.ipynb", "\x00", "💥" * 3, "x" * 4096]  # fmt: skip


class PresenceSocket:
    """One presence socket held across examples, as a tab holds it; ``opened`` counts how many.

    Should one close or stop answering, the next message opens another, so that hypothesis
    shrinks to the message that broke it (and the count tells that it happened)."""

    def __init__(self, server: Server) -> None:
        self.url = SOCKET_URL.format(port=server.port)
        self.ws: websocket.WebSocket | None = None
        self.opened = 0

    def connect(self) -> websocket.WebSocket:
        ws = websocket.create_connection(
            self.url, timeout=ANSWER_TIMEOUT, header={"Authorization": f"token {TOKEN}"}
        )
        self.opened += 1
        return ws

    def ask(self, message: str | bytes) -> Any:
        if self.ws is None:
            self.ws = self.connect()
        why = "the server closed it"
        try:
            if isinstance(message, bytes):
                self.ws.send_binary(message)
            else:
                self.ws.send(message)
            raw = self.ws.recv()  # "" once the server closed it
        except (websocket.WebSocketException, OSError) as err:  # a timeout among them
            raw, why = "", repr(err)
        if not raw:
            self.close()
            raise AssertionError(f"no answer, the socket failed: {why}")
        return json.loads(raw)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


@pytest.fixture(scope="module")
def presence_socket(target):
    sock = PresenceSocket(target.server)
    try:
        yield sock
    finally:
        sock.close()


wrong_values = {
    "id": st.booleans()
    | st.floats()
    | st.text(max_size=12)
    | st.none()
    | json_values
    | st.sampled_from([2**63, -(2**63) - 1, 10**300, 10**4000, "1", "NaN"]),
    "idle_ms": st.integers(max_value=-1)
    | st.integers(min_value=2**40)  # older than the epoch: a run or a 400, never a 500
    | st.floats()
    | json_values
    | st.sampled_from(["NaN", "Infinity", "-1", "10"])
    | st.sampled_from([10**308, 10**309, 10**400, -(10**400)]),  # beyond a float, or just not
    "path": st.sampled_from([*PATHS, *TRICKY, "x" * 4097, " " * 10]) | st.text() | json_values,
    "source": st.text(max_size=300) | st.sampled_from(["s" * 200, "s" * 201, ""]) | json_values,
    "visible": json_values,
    "focused": json_values,
    "leaving": json_values,
}


@st.composite
def valid_reports(draw: st.DrawFn) -> dict[str, Any]:
    report = {
        "id": draw(st.integers(-(2**70), 2**70)),
        # a valid report names a notebook inside the root (anything else is answered 400)
        "path": draw(
            (st.sampled_from(PATHS) | st.text(min_size=1, max_size=30)).filter(
                lambda p: normal_path(p) is not None
            )
        ),
        # a blank source passes the route's check but not the clock's (a 400 once a run is open)
        "source": draw(
            st.sampled_from(["fuzz-tab", "s" * 200]) | st.text(max_size=20).filter(str.strip)
        ),
        "visible": draw(st.booleans()),
        "focused": draw(st.booleans()),
    }
    # a tab's idle time, up to a month (an idle older than the clock's epoch is refused)
    month = 30 * 86_400_000
    idle = draw(st.none() | st.integers(0, month) | st.floats(0, month) | st.just("absent"))
    if idle != "absent":
        report["idle_ms"] = idle
    leaving = draw(st.sampled_from([None, False, True]))
    if leaving is not None:
        report["leaving"] = leaving
        if leaving and draw(st.booleans()):  # a leave may say no more than that
            report = {k: report[k] for k in ("id", "path", "source", "leaving")}
    return report


@st.composite
def near_valid_reports(draw: st.DrawFn) -> dict[str, Any]:
    """A valid report with one to three fields of the wrong type or value, or gone."""
    report = draw(valid_reports())
    # mostly one: a wrong field among right ones is checked, not hidden behind another's error
    broken = draw(st.sampled_from([1, 1, 1, 2, 3]))
    keys = st.lists(st.sampled_from(sorted(wrong_values)), min_size=broken, max_size=broken)
    for key in draw(keys):
        if draw(st.integers(0, 4)) == 0:
            report.pop(key, None)
        else:
            report[key] = draw(wrong_values[key])
    return report


@st.composite
def near_the_size_limit(draw: st.DrawFn) -> str:
    """A report padded (one or two bytes a character) to a few bytes around MAX_BODY."""
    pad = draw(st.sampled_from(["x", "é"]))
    target = MAX_BODY + draw(st.integers(-3, 3) | st.sampled_from([-500, 1000, 3 * MAX_BODY]))
    message = {**VALID_REPORT, "id": 1, "path": ""}
    room = target - len(json.dumps(message, ensure_ascii=False).encode())
    message["path"] = pad * max(0, room // len(pad.encode()))
    return json.dumps(message, ensure_ascii=False)


def _as_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # NaN and Infinity included


def _frame(draw: st.DrawFn, value: Any) -> str | bytes:
    """A JSON value sent as a text frame, or as a binary one in some encoding."""
    text = _as_text(value)
    encoding = draw(st.sampled_from([None, None, None, "utf-8", "utf-16", "utf-32-le"]))
    return text if encoding is None else text.encode(encoding)


@st.composite
def socket_messages(draw: st.DrawFn) -> tuple[str | bytes, bool]:
    """A frame for the presence socket and whether it is a valid report."""
    kind = draw(st.sampled_from(["valid", "near", "near", "near", "keys", "json", "text",
                                 "binary", "size", "deep"]))  # fmt: skip
    if kind == "valid":
        return _frame(draw, draw(valid_reports())), True
    if kind == "near":
        return _frame(draw, draw(near_valid_reports())), False
    if kind == "keys":
        keys = (
            st.sampled_from(sorted(MESSAGE_FIELDS)) | st.sampled_from(FIELDS) | st.text(max_size=8)
        )
        return _frame(draw, draw(st.dictionaries(keys, json_values, max_size=8))), False
    if kind == "json":
        return _frame(draw, draw(json_values)), False
    if kind == "text":
        return draw(
            st.text(max_size=200) | st.sampled_from(["", "{", "null", "{}", "\ufeff{}"])
        ), False
    if kind == "binary":
        return draw(st.binary(max_size=200)), False
    if kind == "size":
        text = draw(near_the_size_limit())
        return (text.encode() if draw(st.booleans()) else text), False
    return draw(deep_json), False


def _parse(message: str | bytes) -> Any:
    """The message as the server reads it, or None: what its answer's ``id`` follows from."""
    if len(message.encode() if isinstance(message, str) else message) > MAX_BODY:
        return None
    try:
        return json.loads(message)
    except Exception:  # not JSON, not decodable, nested too deep: all the same here
        return None


def check_socket_answer(answer: Any, message: str | bytes, valid: bool) -> None:
    what = f"{message[:300]!r} -> {answer!r}"[:1000]
    assert isinstance(answer, dict), what
    data = _parse(message)
    msg_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(msg_id, bool) or not isinstance(msg_id, int):
        msg_id = None
    assert answer.get("id") == msg_id, what
    if "run" in answer:
        assert set(answer) == {"id", "run"}, what
        assert answer["run"] is None or isinstance(answer["run"], dict), what
        # only a report gets a run: an object with an id and no field besides a report's
        assert msg_id is not None and set(data) <= MESSAGE_FIELDS, what
        return
    assert not valid, what
    assert set(answer) == {"id", "status", "message", "reason"}, what
    assert isinstance(answer["message"], str) and answer["message"].strip(), what
    assert "\n" not in answer["message"], what
    assert isinstance(answer["status"], int) and 400 <= answer["status"] < 500, what
    size = len(message.encode() if isinstance(message, str) else message)
    assert ("larger than" in answer["message"]) == (size > MAX_BODY), what


@settings(max_examples=400 * SCALE, **FUZZ_SETTINGS)
@given(sent=socket_messages())
def test_presence_socket_answers_every_garbage_frame_and_stays_open(presence_socket, sent):
    message, valid = sent
    check_socket_answer(presence_socket.ask(message), message, valid)


def test_the_presence_socket_is_still_well_after_its_fuzz(target, presence_socket):
    http = target.server.http
    assert http.get("/api/status").status_code == 200
    assert http.get("/timeback/api/status").status_code == 200
    # the one socket took every frame; it still answers, and so does a new one
    assert presence_socket.ask(json.dumps({**VALID_REPORT, "id": 1}))["id"] == 1
    assert presence_socket.opened == 1, "a frame closed the socket or went unanswered"
    fresh = PresenceSocket(target.server)
    try:
        answer = fresh.ask(json.dumps({**VALID_REPORT, "path": "lesson.ipynb", "id": 2}))
    finally:
        fresh.close()
    assert set(answer) == {"id", "run"} and answer["id"] == 2, answer
    assert answer["run"] is None or isinstance(answer["run"], dict), answer


def test_a_long_run_id_gets_the_json_error_shape(target):
    r = target.server.http.get(f"/timeback/api/runs/{'x' * 101}")
    assert r.status_code == 400
    assert "is not a UUID" in r.json()["message"]


def test_an_error_message_quotes_the_input_as_given(target):
    r = target.server.http.get("/timeback/api/runs/50%25")
    assert r.status_code == 400
    assert "'50%'" in r.json()["message"], r.json()


def test_an_error_message_stays_on_one_line(target):
    r = target.server.http.post("/timeback/api/flush", content=b'{"\\n": null}')
    assert r.status_code == 400
    assert "\n" not in r.json()["message"], r.json()


def test_the_server_is_still_well_after_the_fuzz(target):
    """Runs last in this module (pytest keeps file order): alive, recording, no 5xx logged."""
    status = target.server.http.get("/timeback/api/status")
    assert status.status_code == 200
    assert status.json()["recording"] is True, status.json()
    assert target.server.proc.poll() is None
