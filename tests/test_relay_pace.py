"""Relay-paced sending (``delivery/pace.py``, ``c.Relay.send_every``): a student's server holds
its heartbeats until the relay's pace has passed since its last send, then sends them in one
envelope; completions, flushes, stops and retries are never held.

Against a real JupyterHub and two real relay processes (one told ``--Relay.send_every=60``, one
with the default, which answers as a relay before pacing did), with the server's real outbox,
drainer and relay sink; the drainer's clock is injected, so a 60 s pace costs no real minute.
Values no real relay can send (its setting is validated) come from a small HTTP stand-in that
answers what each test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from timeback_jupyter import caliper
from timeback_jupyter.delivery import Drainer
from timeback_jupyter.delivery.pace import MAX_PACE, pace_from
from timeback_jupyter.delivery.relay import RelaySink
from timeback_jupyter.relay.settings import MAX_SEND_EVERY, Relay
from timeback_jupyter.store import KIND_COMPLETION, KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import SENSOR, completion_event, time_spent_events

from .relay import hub as shared
from .relay.hub import SCOPE, Hub, RelayProcess, free_port
from .test_tracker import QUIZ, make_tracker
from .test_tracker import Clock as TrackerClock

PACE = 60
standin = shared.standin  # the stand-in Timeback the relays deliver to (module scope)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def relays(tmp_path_factory, standin):
    """(hub, paced relay behind the hub, default relay reached directly)."""
    hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
    paced = RelayProcess(
        tmp_path_factory.mktemp("paced"), hub, standin, f"--Relay.send_every={PACE}"
    )
    plain = RelayProcess(tmp_path_factory.mktemp("plain"), hub, standin, port=free_port())
    try:
        paced.start(via_hub=False)
        plain.start(via_hub=False)
        hub.start()
        hub.create_user("ada")
        yield hub, paced, plain
    finally:
        paced.stop()
        plain.stop()
        hub.stop()


@pytest.fixture(scope="module")
def token(relays):
    return relays[0].token("ada", [SCOPE, "users:activity!user=ada"])


class ManualClock:
    """The drainer's clock: time moves only when the test says (``advance``)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            await asyncio.sleep(0.01)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Counted(RelaySink):
    """The relay sink, noting the event ids of each envelope it gets an answer for."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.envelopes: list[list[str]] = []

    async def send(self, envelope):
        try:
            await super().send(envelope)
        finally:
            self.envelopes.append([e["id"] for e in envelope["data"]])


async def until(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Student:
    """A server's outbox and drainer sending to ``url``; heartbeats of one run, in order."""

    def __init__(self, tmp_path, url: str, token: str, **kw) -> None:
        self.clock = ManualClock()
        self.store = Store(tmp_path / f"{uuid.uuid4().hex}.sqlite3")
        self.sink = Counted(url, token, timeout=10)
        kw = {"batch_size": 50, "retry_initial": 0.05, "retry_max": 0.2, **kw}
        self.drainer = Drainer(
            self.store, self.sink, now=self.clock.now, sleep=self.clock.sleep, **kw
        )
        self.run_id = str(uuid.uuid4())
        self.windows = iter(time_spent_events(self.run_id, 40, start=time.time() - 3600))
        self.task: asyncio.Task | None = None

    def heartbeat(self) -> str:
        event = next(self.windows)
        self.store.enqueue(event, run_id=self.run_id, kind=KIND_TIME_SPENT, sensor=SENSOR)
        self.drainer.notify()
        return event["id"]

    def completion(self) -> str:
        event = completion_event(self.run_id, at=time.time())
        self.store.enqueue(event, run_id=self.run_id, kind=KIND_COMPLETION, sensor=SENSOR)
        self.drainer.notify(urgent=True)
        return event["id"]

    def start(self) -> None:
        self.task = asyncio.create_task(self.drainer.run())

    async def sent(self, count: int, what: str) -> None:
        await until(lambda: len(self.sink.envelopes) >= count, what)
        assert len(self.sink.envelopes) == count, self.sink.envelopes

    async def acked(self) -> bool:
        """Whether the outbox empties (the drainer acks after the sink's answer). A moment
        more lets the drainer note when it sent (on its clock), before a test moves it."""
        await until(lambda: self.store.depth() == 0, "the outbox acknowledged", timeout=20)
        await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        await asyncio.wait_for(self.drainer.stop(), 10)
        await self.sink.aclose()
        self.store.close()


@contextlib.asynccontextmanager
async def sending(tmp_path, url: str, token: str):
    student = Student(tmp_path, url, token)
    try:
        yield student
    finally:
        await student.close()


@pytest.fixture
def paced_url(relays):
    return relays[0].relay_url


async def held(student: Student, seconds: float = 0.3) -> None:
    """Real time for the drainer to act, had it wanted to."""
    await asyncio.sleep(seconds)


async def test_the_relay_tells_its_pace_only_when_it_has_one(relays, token):
    hub, _, plain = relays
    events = time_spent_events(str(uuid.uuid4()), 1, start=time.time() - 7200)
    body = caliper.envelope(events, SENSOR, time.time())
    headers = {"Authorization": f"token {token}"}
    answer = httpx.post(f"{hub.relay_url}api/events", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.json()["send_every"] == PACE
    answer = httpx.post(f"{plain.direct_url}api/events", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and "send_every" not in answer.json()  # as before


async def test_paced_heartbeats_go_together_after_the_pace(paced_url, token, tmp_path):
    async with sending(tmp_path, paced_url, token) as paced:
        first = paced.heartbeat()
        paced.start()
        await paced.sent(1, "the first heartbeat (no pace known yet: at once)")
        assert await paced.acked()
        assert paced.sink.envelopes == [[first]] and paced.sink.pace == PACE
        assert paced.sink.describe()["send_every"] == PACE
        later = [paced.heartbeat(), paced.heartbeat()]
        await held(paced)
        paced.clock.advance(PACE - 1)
        later.append(paced.heartbeat())
        await held(paced)
        assert len(paced.sink.envelopes) == 1 and paced.store.depth() == 3  # kept in the outbox
        paced.clock.advance(1)
        await paced.sent(2, "the held heartbeats, once the pace passed")
        assert paced.sink.envelopes[1] == later and await paced.acked()
        # Quiet for longer than the pace: the next heartbeat goes at once, and starts a new hold.
        paced.clock.advance(PACE + 10)
        await held(paced)
        alone = paced.heartbeat()
        await paced.sent(3, "a heartbeat after a quiet pace")
        assert paced.sink.envelopes[2] == [alone]
        paced.heartbeat()
        await held(paced)
        assert len(paced.sink.envelopes) == 3


async def test_a_completion_goes_at_once_with_what_is_pending(paced_url, token, tmp_path):
    async with sending(tmp_path, paced_url, token) as paced:
        paced.heartbeat()
        paced.start()
        await paced.sent(1, "the first heartbeat")
        assert await paced.acked()
        pending = [paced.heartbeat(), paced.heartbeat()]
        await held(paced)
        assert len(paced.sink.envelopes) == 1
        done = paced.completion()  # the clock does not move: only urgency sends it
        await paced.sent(2, "the completion")
        assert paced.sink.envelopes[1] == [*pending, done] and await paced.acked()
        # It was a send like any other: the heartbeats after it wait for the pace again.
        paced.heartbeat()
        await held(paced)
        assert len(paced.sink.envelopes) == 2
        paced.clock.advance(PACE)
        await paced.sent(3, "the heartbeat after the completion's pace")


def test_the_tracker_says_a_completion_is_urgent_and_a_heartbeat_is_not(tmp_path):
    calls: list[bool] = []
    now = TrackerClock()
    with Store(tmp_path / "t.sqlite3") as store:
        tracker = make_tracker(store, now, notify=lambda urgent=False: calls.append(urgent))
        run = tracker.start(QUIZ, path="quiz.ipynb").run
        now.t += 31
        tracker.tick()
        assert calls and not any(calls)  # heartbeats: may wait for a pace
        tracker.complete(run.id, xp_earned=0)
        assert calls[-1] is True  # the completion: the student waits for their XP
        assert [e["type"] for e in store.events()][-1] == "ActivityEvent"


async def test_flush_and_a_stopping_server_send_at_once(paced_url, token, tmp_path):
    async with sending(tmp_path, paced_url, token) as paced:
        paced.heartbeat()
        paced.start()
        await paced.sent(1, "the first heartbeat")
        assert await paced.acked()
        flushed = paced.heartbeat()
        await held(paced)
        report = await paced.drainer.flush(timeout=10)  # jupyter timeback flush
        assert report.sent == 1 and report.remaining == 0
        assert paced.sink.envelopes[-1] == [flushed]
        last = paced.heartbeat()
        await held(paced)
        # What a stopping server does (ServerApp.stop_extension): flush, then stop the drainer.
        started = time.monotonic()
        report = await paced.drainer.flush(timeout=2.0)
        await asyncio.wait_for(paced.drainer.stop(), 5)
        assert report.remaining == 0 and paced.sink.envelopes[-1] == [last]
        assert paced.task is not None and paced.task.done()
        assert time.monotonic() - started < 5  # the pace (on a clock that never moves) kept nothing


async def test_a_relay_without_the_field_gets_each_heartbeat_at_once(relays, token, tmp_path):
    student = Student(tmp_path, relays[2].direct_url, token)
    try:
        student.heartbeat()
        student.start()
        await student.sent(1, "the first heartbeat")
        assert student.sink.pace == 0
        student.heartbeat()
        await student.sent(2, "the second heartbeat, at once")
        student.heartbeat()
        await student.sent(3, "the third heartbeat, at once")
    finally:
        await student.close()


# -- what no real relay says: a stand-in answers each test's script ----------------------------


class OddRelay:
    """An HTTP server on loopback answering ``POST api/events`` with ``answers`` in turn (the
    last one repeated): (status, body). It knows no event (``GET api/events/<id>``: 404)."""

    def __init__(self, *answers: tuple[int, dict]) -> None:
        self.answers = list(answers)
        self.posts = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                relay.posts += 1
                answer = relay.answers.pop(0) if len(relay.answers) > 1 else relay.answers[0]
                self._reply(*answer)

            def do_GET(self) -> None:
                self._reply(404, {"id": self.path.rsplit("/", 1)[-1], "message": "no such"})

            def log_message(self, *args) -> None:
                """Quiet: http.server would write each request to the test's stderr."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/odd/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok(**extra) -> tuple[int, dict]:
    return 200, {"accepted": 1, "refused": 0, "events": [], **extra}


@pytest.mark.parametrize(
    ("value", "pace", "logged"),
    [
        (30, 30.0, None),
        (0, 0.0, None),
        (-5, 0.0, "negative"),
        ("60", 0.0, "not a number"),
        (True, 0.0, "not a number"),
        (math.inf, 0.0, "not a number"),
        (math.nan, 0.0, "not a number"),
        ([60], 0.0, "not a number"),
        (10**9, MAX_PACE, "over 300"),
    ],
)
def test_a_pace_is_read_bounded_or_ignored_with_a_warning(value, pace, logged, caplog):
    said: set[str] = set()
    with caplog.at_level(logging.WARNING, "timeback_jupyter.delivery"):
        assert pace_from({"send_every": value}, said) == pace
        assert pace_from({"send_every": value}, said) == pace
    warnings = [r.getMessage() for r in caplog.records]
    if logged is None:
        assert warnings == []
    else:  # once, however often the relay says it
        assert len(warnings) == 1 and logged in warnings[0] and "send_every" in warnings[0]
    assert pace_from({"events": []}) == 0.0 and pace_from("not an answer") == 0.0


def test_the_relays_setting_is_bounded_as_servers_bound_it():
    assert MAX_SEND_EVERY == MAX_PACE
    assert Relay().send_every == 0
    assert Relay(send_every=60).send_every == 60
    for bad in (-1, MAX_SEND_EVERY + 1):
        with pytest.raises(Exception, match="c.Relay.send_every must be 0 to 300"):
            Relay(send_every=bad)


@pytest.mark.parametrize("value", [-5, "soon", None, math.nan])
async def test_an_unusable_pace_never_stalls_delivery(value, tmp_path):
    odd = OddRelay(ok(send_every=value))
    student = Student(tmp_path, odd.url, "a-server-token")
    try:
        student.heartbeat()
        student.start()
        await student.sent(1, "the first heartbeat")
        for n in (2, 3):
            student.heartbeat()
            await student.sent(n, "the next heartbeat, at once (the clock never moves)")
        assert student.sink.pace == 0 and await student.acked()
    finally:
        await student.close()
        odd.close()


async def test_a_huge_pace_is_held_to_the_most_a_server_follows(tmp_path):
    odd = OddRelay(ok(send_every=10**9))
    student = Student(tmp_path, odd.url, "a-server-token")
    try:
        student.heartbeat()
        student.start()
        await student.sent(1, "the first heartbeat")
        assert student.sink.pace == MAX_PACE and await student.acked()
        student.heartbeat()
        student.clock.advance(MAX_PACE - 1)
        await held(student)
        assert len(student.sink.envelopes) == 1
        student.clock.advance(1)
        await student.sent(2, "the heartbeat after the longest pace")
    finally:
        await student.close()
        odd.close()


async def test_a_retry_is_not_held_by_the_pace(tmp_path):
    """A completion's send fails (503): its retry goes after the backoff, not the pace."""
    odd = OddRelay(ok(send_every=PACE), (503, {"message": "busy"}), ok(send_every=PACE))
    student = Student(tmp_path, odd.url, "a-server-token")
    try:
        student.heartbeat()
        student.start()
        await student.sent(1, "the first heartbeat")
        done = student.completion()
        await student.sent(2, "the completion's first attempt")
        assert odd.posts == 2 and student.store.depth() == 1
        # Time moves in small steps until the retry goes: the backoff (retry_max 0.2 s), not
        # the pace, decides when.
        while len(student.sink.envelopes) < 3 and student.clock.t < PACE / 2:
            student.clock.advance(0.05)
            await asyncio.sleep(0.02)
        await student.sent(3, "the completion's retry")
        assert student.clock.t < 5
        assert student.sink.envelopes[2] == [done] and await student.acked()
    finally:
        await student.close()
        odd.close()
