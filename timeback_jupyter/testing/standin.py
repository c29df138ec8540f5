"""A real HTTP server on 127.0.0.1 standing in for Timeback's token and Caliper endpoints.

It speaks what the official ``timeback_caliper`` client speaks (OAuth2 client credentials with
HTTP Basic, ``POST /caliper/event``, ``POST /caliper/event/validate``, ``GET
/caliper/events/{id}``) and validates every envelope and event with the official models, so a
test that passes here sent what Timeback accepts. Faults are scripted per request::

    with StandIn() as api:
        api.script(Fault.rate_limited(30), Fault.error(503), Fault.hang(2, then="drop"))
        ...
        assert api.received_ids == [...]

Run it by hand with ``python -m timeback_jupyter.testing.standin --port 8765`` (prints its URL).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import secrets
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from pydantic import ValidationError
from timeback_caliper import CALIPER_DATA_VERSION, ActivityCompletedEvent, TimeSpentEvent

EVENT_PATH = "/caliper/event"
VALIDATE_PATH = "/caliper/event/validate"
TOKEN_PATH = "/oauth2/token"
USERS_PATH = "/ims/oneroster/rostering/v1p2/users"
_MODELS = {"TimeSpentEvent": TimeSpentEvent, "ActivityEvent": ActivityCompletedEvent}


@dataclass(frozen=True)
class Fault:
    """One scripted answer, consumed by the next request to ``path``."""

    kind: Literal["status", "hang", "slow", "close"]
    status: int = 200
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    then: Literal["answer", "drop"] = "answer"
    path: str = EVENT_PATH

    @classmethod
    def rate_limited(cls, retry_after: float | None, path: str = EVENT_PATH) -> Fault:
        headers = () if retry_after is None else (("Retry-After", f"{retry_after:g}"),)
        body = {"message": "Too many requests"}
        return cls("status", 429, body, headers, path=path)

    @classmethod
    def error(cls, status: int = 500, message: str = "", path: str = EVENT_PATH) -> Fault:
        """Any status with a ``{"message": ...}`` body: 500, 503, 400 with a reason..."""
        return cls("status", status, {"message": message or f"stand-in says {status}"}, path=path)

    @classmethod
    def hang(
        cls, seconds: float, then: Literal["answer", "drop"] = "drop", path: str = EVENT_PATH
    ) -> Fault:
        """Say nothing for ``seconds``; then process and answer, or close without a word."""
        return cls("hang", seconds=seconds, then=then, path=path)

    @classmethod
    def slow(cls, seconds: float, path: str = EVENT_PATH) -> Fault:
        """Process (store the events) at once, but answer only after ``seconds``."""
        return cls("slow", seconds=seconds, path=path)

    @classmethod
    def close(cls, path: str = EVENT_PATH) -> Fault:
        """Close the connection without answering, before processing anything."""
        return cls("close", path=path)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    at: float  # time.monotonic() when it arrived
    client_id: str | None = None  # for token requests
    body: Any = None  # the parsed JSON of an event POST, also when a fault answered it

    @property
    def event_ids(self) -> list[str]:
        data = self.body.get("data") if isinstance(self.body, dict) else None
        return [e.get("id") for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _validate_envelope(envelope: Any) -> list[str]:
    """Problems with an envelope and each of its events, via the official models."""
    if not isinstance(envelope, dict):
        return ["envelope: must be a JSON object"]
    problems = []
    if not isinstance(envelope.get("sensor"), str) or not envelope["sensor"].strip():
        problems.append("sensor: must be a non-empty string")
    send_time = envelope.get("sendTime")
    try:
        datetime.fromisoformat(str(send_time).replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"sendTime: {send_time!r} is not an ISO datetime")
    if envelope.get("dataVersion") != CALIPER_DATA_VERSION:
        problems.append(f"dataVersion: must equal {CALIPER_DATA_VERSION}")
    data = envelope.get("data")
    if not isinstance(data, list) or not data:
        problems.append("data: must be a non-empty list")
        return problems
    for i, event in enumerate(data):
        kind = event.get("type") if isinstance(event, dict) else None
        model = _MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(f"data[{i}].type: {kind!r} is not a Timeback event type")
            continue
        try:
            model.model_validate(event)
        except ValidationError as err:
            for issue in err.errors():
                loc = ".".join(str(p) for p in issue["loc"])
                problems.append(f"data[{i}].{loc}: {issue['msg']}")
    return problems


class StandIn:
    """The server. Thread-safe accessors; use as a context manager or start()/stop()."""

    def __init__(
        self,
        client_id: str = "standin-client",
        client_secret: str = "standin-secret",
        *,
        port: int = 0,
        latency: float = 0.0,
        token_ttl: int = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency  # every event POST: stored first, answered after this delay
        self.token_ttl = token_ttl
        # OneRoster users by email (the official SDK finds the actor's sourcedId this way)
        self.users: dict[str, list[str]] = {}
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults: deque[Fault] = deque()
        self._tokens: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> StandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        server = _Server(("127.0.0.1", self._port), handler)
        server.daemon_threads = True
        server.block_on_close = False  # hanging handlers must not hold up stop()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Caliper base URL (``base_url`` for the official client)."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    # -- scripting and inspection ----------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._faults = deque()
            self._received: list[dict[str, Any]] = []
            self._envelopes: list[dict[str, Any]] = []
            self._requests: list[Request] = []
            self._by_id: dict[str, dict[str, Any]] = {}

    @property
    def received(self) -> list[dict[str, Any]]:
        """Accepted events in arrival order (duplicates included, if any were sent)."""
        with self._lock:
            return list(self._received)

    @property
    def received_ids(self) -> list[str]:
        return [event["id"] for event in self.received]

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._envelopes)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- used by the handler ---------------------------------------------------------------

    def _note(self, request: Request) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            if self._faults and self._faults[0].path == request.path:
                return self._faults.popleft()
        return None

    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._tokens.add(token)
        return token

    def _token_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            return header[len("Bearer ") :] in self._tokens

    def _accept(self, envelope: dict[str, Any]) -> None:
        with self._lock:
            self._envelopes.append(envelope)
            for event in envelope["data"]:
                self._received.append(event)
                self._by_id.setdefault(
                    event["id"],
                    {
                        "event": event,
                        "sensor": envelope["sensor"],
                        "sendTime": envelope["sendTime"],
                        "n": len(self._by_id) + 1,
                    },
                )

    def _stored(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._by_id.get(event_id)
        if entry is None:
            return None
        event = entry["event"]
        # The shape of the real API's StoredEvent (timeback_caliper.types.api).
        return {
            "id": entry["n"],
            "externalId": event["id"],
            "sensor": entry["sensor"],
            "type": event["type"],
            "profile": event.get("profile"),
            "action": event["action"],
            "eventTime": event["eventTime"],
            "sendTime": entry["sendTime"],
            "created_at": entry["sendTime"],
            "actor": event.get("actor"),
            "object": event.get("object"),
            "generated": event.get("generated"),
            "session": event.get("session"),
            "extensions": event.get("extensions"),
        }

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed or timed out mid-request is a scenario here, not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    # One segment per answer: headers and body written apart meet delayed ACKs (40 ms each).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read .requests instead

    def _answer(
        self, status: int, body: Any = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _run(self, method: str) -> None:
        stand = self.standin
        path = self.path.split("?", 1)[0]
        body = self._body()
        client_id = self._basic_client_id() if path == TOKEN_PATH else None
        parsed = None
        if path in (EVENT_PATH, VALIDATE_PATH):
            try:
                parsed = json.loads(body or b"null")
            except json.JSONDecodeError:
                parsed = None
        fault = stand._note(Request(method, path, time.monotonic(), client_id, parsed))
        if fault is not None:
            if fault.kind == "close":
                self.close_connection = True
                return
            if fault.kind == "status":
                self._answer(fault.status, fault.body, fault.headers)
                return
            if fault.kind == "hang":
                stand._pause(fault.seconds)
                if fault.then == "drop":
                    self.close_connection = True
                    return
        status, answer = self._route(method, path, body)
        delay = fault.seconds if fault is not None and fault.kind == "slow" else 0.0
        if method == "POST" and path == EVENT_PATH:
            delay += stand.latency
        if delay:
            stand._pause(delay)
        self._answer(status, answer)

    def _basic_client_id(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[len("Basic ") :]).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0]

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        stand = self.standin
        if method == "POST" and path == TOKEN_PATH:
            return self._token(body)
        if not stand._token_ok(self.headers.get("Authorization")):
            return 401, {"message": "missing or unknown bearer token"}
        if method == "POST" and path in (EVENT_PATH, VALIDATE_PATH):
            try:
                envelope = json.loads(body or b"null")
            except json.JSONDecodeError as err:
                return 400, {"message": f"invalid JSON: {err}"}
            problems = _validate_envelope(envelope)
            if path == VALIDATE_PATH:
                if problems:
                    return 200, {"status": "error", "message": problems[0], "errors": problems}
                return 200, {"status": "success"}
            if problems:
                return 400, {"message": "; ".join(problems), "errors": problems}
            stand._accept(envelope)
            return 200, {"jobId": str(uuid.uuid4())}
        if method == "GET" and path == USERS_PATH:
            query = parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "")
            wanted = query.get("filter", [""])[0]
            email = wanted.removeprefix("email='").removesuffix("'").replace("''", "'")
            ids = stand.users.get(email, [])
            return 200, {"users": [{"sourcedId": i, "email": email} for i in ids]}
        if method == "GET" and path.startswith("/caliper/events/"):
            stored = stand._stored(unquote(path[len("/caliper/events/") :]))
            if stored is None:
                return 404, {"message": "Event not found"}
            return 200, {"event": stored}
        return 404, {"message": f"no route {method} {path}"}

    def _token(self, body: bytes) -> tuple[int, Any]:
        stand = self.standin
        form = parse_qs(body.decode(errors="replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        header = self.headers.get("Authorization") or ""
        expected = base64.b64encode(f"{stand.client_id}:{stand.client_secret}".encode()).decode()
        if header != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        return 200, {
            "access_token": stand._issue_token(),
            "token_type": "Bearer",
            "expires_in": stand.token_ttl,
        }

    def do_POST(self) -> None:
        self._run("POST")

    def do_GET(self) -> None:
        self._run("GET")


# -- real events for tests (built by timeback_jupyter.caliper, so they validate) -------------

SENSOR = "https://notebooks.example.edu"


def _target() -> Any:
    from timeback_jupyter import caliper
    from timeback_jupyter.config import Course
    from timeback_jupyter.model import Activity, CourseRef

    course = Course("Math", 3, None, {"staging": "math-3-stg"}, SENSOR)
    activity = Activity("fractions-1", "Fractions 1", CourseRef("Math", 3))
    return caliper.Target(
        "Jupyter", SENSOR, "staging", "https://api.staging.alpha-1edtech.ai", course, activity
    )


def _actor() -> Any:
    from timeback_jupyter import caliper

    return caliper.Actor(
        "https://api.staging.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/s-1",
        "student@example.edu",
    )


def time_spent_events(
    run_id: str, count: int, *, start: float = 1_768_471_200.0
) -> list[dict[str, Any]]:
    """``count`` consecutive 15 s heartbeat events of one run, in order."""
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Window

    target, actor = _target(), _actor()
    return [
        caliper.time_spent_event(
            Window(run_id, start + 15 * i, start + 15 * (i + 1), 12.0, 3.0), run_id, actor, target
        )
        for i in range(count)
    ]


def completion_event(
    run_id: str, *, at: float = 1_768_472_000.0, xp: float = 5.0
) -> dict[str, Any]:
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Completion

    completion = Completion(run_id, xp, at, total_questions=4, correct_questions=3)
    return caliper.completion_event(completion, run_id, 1, _actor(), _target())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for Timeback's Caliper API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", default="standin-client")
    parser.add_argument("--client-secret", default="standin-secret")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    stand = StandIn(args.client_id, args.client_secret, port=args.port, latency=args.latency)
    with stand:
        print(stand.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()


__all__ = [
    "EVENT_PATH",
    "SENSOR",
    "TOKEN_PATH",
    "VALIDATE_PATH",
    "Fault",
    "Request",
    "StandIn",
    "completion_event",
    "time_spent_events",
]
