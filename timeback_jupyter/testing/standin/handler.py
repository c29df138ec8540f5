"""The HTTP side: one handler per request, carrying out a scripted fault or routing to the API.

The handler holds no state: what it sees and does goes through its
:class:`~timeback_jupyter.testing.standin.StandIn` (``standin``, set per server).
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote

from .faults import Fault
from .jobs import Jobs
from .oauth import Tokens, basic_client_id, token_answer
from .oneroster import users_answer
from .paths import (
    EVENT_PATH,
    JOB_STATUS_PATH,
    STORED_EVENT_PREFIX,
    TOKEN_PATH,
    USERS_PATH,
    VALIDATE_PATH,
)
from .records import Recording, Request
from .validation import validate_envelope

_JOB_PREFIX, _JOB_SUFFIX = JOB_STATUS_PATH.split("{id}")


class Host(Protocol):
    """What a handler needs of the stand-in serving it (:class:`.server.StandIn`): named here so
    the handler does not import the server that imports it."""

    client_id: str
    client_secret: str
    latency: float
    token_ttl: float
    users: dict[str, list[str]]
    _recording: Recording
    _tokens: Tokens
    _jobs: Jobs

    def _note(self, request: Request) -> Fault | None: ...

    def _submit(self, envelope: dict[str, Any], fault: Fault | None) -> str: ...

    def _pause(self, seconds: float) -> None: ...


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed or timed out mid-request is a scenario here, not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    standin: Host
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
        auth = self.headers.get("Authorization")
        client_id = basic_client_id(auth) if path == TOKEN_PATH else None
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
        job_fault = fault if fault is not None and fault.kind == "job" else None
        status, answer = self._route(method, path, body, job_fault)
        delay = fault.seconds if fault is not None and fault.kind == "slow" else 0.0
        if method == "POST" and path == EVENT_PATH:
            delay += stand.latency
        if delay:
            stand._pause(delay)
        self._answer(status, answer)

    def _route(
        self, method: str, path: str, body: bytes, job_fault: Fault | None = None
    ) -> tuple[int, Any]:
        stand = self.standin
        auth = self.headers.get("Authorization")
        if method == "POST" and path == TOKEN_PATH:
            return token_answer(
                body,
                auth,
                client_id=stand.client_id,
                client_secret=stand.client_secret,
                tokens=stand._tokens,
                ttl=stand.token_ttl,
            )
        if not stand._tokens.valid(auth):
            return 401, {"message": "missing or unknown bearer token"}
        if method == "POST" and path in (EVENT_PATH, VALIDATE_PATH):
            return self._events(path, body, job_fault)
        if method == "GET" and path == USERS_PATH:
            return users_answer(stand.users, self.path.split("?", 1)[1] if "?" in self.path else "")
        if method == "GET" and path.startswith(STORED_EVENT_PREFIX):
            stored = stand._recording.stored(unquote(path[len(STORED_EVENT_PREFIX) :]))
            if stored is None:
                return 404, {"message": "Event not found"}
            return 200, {"event": stored}
        if method == "GET" and path.startswith(_JOB_PREFIX) and path.endswith(_JOB_SUFFIX):
            job_id = unquote(path[len(_JOB_PREFIX) : -len(_JOB_SUFFIX)])
            job = stand._jobs.status(job_id)
            return (404, {"message": "Job not found"}) if job is None else (200, job)
        return 404, {"message": f"no route {method} {path}"}

    def _events(self, path: str, body: bytes, job_fault: Fault | None) -> tuple[int, Any]:
        """``POST /caliper/event`` (validate, then submit as a job) or ``.../validate`` (only)."""
        try:
            envelope = json.loads(body or b"null")
        except json.JSONDecodeError as err:
            return 400, {"message": f"invalid JSON: {err}"}
        problems = validate_envelope(envelope)
        if path == VALIDATE_PATH:
            if problems:
                return 200, {"status": "error", "message": problems[0], "errors": problems}
            return 200, {"status": "success"}
        if problems:
            return 400, {"message": "; ".join(problems), "errors": problems}
        return 200, {"jobId": self.standin._submit(envelope, job_fault)}

    def do_POST(self) -> None:
        self._run("POST")

    def do_GET(self) -> None:
        self._run("GET")
