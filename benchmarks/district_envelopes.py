"""The district benchmark's envelopes: what students' servers post, made fast.

Each envelope is a JSON template made once with the product's own builders
(``caliper.time_spent_event``, ``completion_event``, ``envelope``), filled per request with new
event ids and the windows' ends by string formatting; each student's request head is bytes
made once. Used by :mod:`.district_load` and :mod:`.relay_cpu_load`.

Paced servers (the relay tells servers a pace; a server then sends its pending heartbeats
together): an envelope holds ``windows`` consecutive windows of ``window`` seconds each, the
last ending when it is sent; a completion rides with the envelope holding its run's
``completion_every``-th window. One window per envelope is a server sending each at once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

ACTIVE_SHARE = 0.8  # of each window, the rest inactive (a heartbeat's usual mix)


def _iso(t: float) -> str:
    return (
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(t * 1000) % 1000:03d}Z"
    )


class Clock:
    """``_iso`` with the date and time of day made once per second (a strftime per request
    was a tenth of the generator's work)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, t: float) -> str:
        ms = int(t * 1000)
        second = ms // 1000
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._prefix}{ms % 1000:03d}Z"


class Ids:
    """Fresh UUIDs (version 4 in form) without a system call each: a random prefix per
    process and a counter. Unique across generators and runs (the prefix has 74 random bits)."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:012x}"


def templates(window: float, windows: int = 1) -> tuple[str, str]:
    """The JSON text of an envelope of ``windows`` consecutive heartbeat windows of ``window``
    seconds (a paced server's send), and of the same with a completion after them, built by the
    product's own builders, with the parts a request changes left open: ``%(event<j>)s`` and
    ``%(gen<j>)s`` (window j's event and metrics ids), ``%(time<j>)s`` (its end), ``%(run)s``,
    and ``%(eventc)s``/``%(genc)s`` for the completion (at the last window's end)."""
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Completion, Window
    from timeback_jupyter.testing.standin import SENSOR, _actor, _target

    if windows < 1:
        raise ValueError(f"an envelope holds at least one window, not {windows}")
    run = str(uuid.uuid4())
    # Whole seconds far apart: each end's text is unique, so it can be replaced by its slot.
    ends = [1_800_000_000.0 - 100.0 * (windows - 1 - j) for j in range(windows)]
    beats = [
        caliper.time_spent_event(
            Window(run, end - window, end, window * ACTIVE_SHARE, window * (1 - ACTIVE_SHARE)),
            run, _actor(), _target(), event_id=f"urn:uuid:{uuid.uuid4()}",
        )
        for end in ends
    ]  # fmt: skip
    done = Completion(run, 5.0, ends[-1], total_questions=4, correct_questions=3)
    completion = caliper.completion_event(
        done, run, 1, _actor(), _target(), event_id=f"urn:uuid:{uuid.uuid4()}"
    )
    slots = [str(j) for j in range(windows)]
    out = []
    for events, names in ((beats, slots), ([*beats, completion], [*slots, "c"])):
        text = json.dumps(caliper.envelope(events, SENSOR, ends[-1]), separators=(",", ":"))
        text = text.replace("%", "%%").replace(run, "%(run)s")
        for event, name in zip(events, names, strict=True):
            text = text.replace(event["id"], f"urn:uuid:%(event{name})s")
            # the metrics' id, derived from the event's
            text = text.replace(event["generated"]["id"], f"urn:uuid:%(gen{name})s")
        for j, end in enumerate(ends):
            text = text.replace(_iso(end), f"%(time{j})s")
        out.append(text)
    return out[0], out[1]


@dataclass
class Student:
    name: str
    token: str
    replica: int
    offset: float  # the share of the interval after a phase's start it sends at, 0 to 1
    rank: float  # 0 to 1: a phase with share x is sent by the students of rank < x
    run: str = ""
    beats: int = 0  # windows sent in the current count of completions
    head: bytes = b""  # the request up to its Content-Length's value


class Maker:
    """Each envelope's request bytes from its student's head and the phase's templates: a
    student's next ``windows`` windows of ``window`` seconds, the last ending when sent, and
    its run's completion with them when they hold the run's ``completion_every``-th window."""

    def __init__(self, window: float, completion_every: int, windows: int = 1) -> None:
        self.beat_t, self.done_t = templates(window, windows)
        self.window, self.windows = window, windows
        self.every = completion_every
        self.ids = Ids()
        self.clock = Clock()

    def request(self, s: Student, at: float) -> tuple[bytes, int]:
        ids, k = self.ids, self.windows
        if not s.run:
            s.run = ids()
        complete = s.beats // self.every != (s.beats + k) // self.every
        s.beats += k
        fill = {"run": s.run, "eventc": ids(), "genc": ids()}
        for j in range(k):
            fill[f"event{j}"], fill[f"gen{j}"] = ids(), ids()
            fill[f"time{j}"] = self.clock.iso(at - (k - 1 - j) * self.window)
        body = ((self.done_t if complete else self.beat_t) % fill).encode()
        if complete:
            s.run = ""
        return b"%s%d\r\n\r\n%s" % (s.head, len(body), body), k + complete


def request_head(path: str, token: str) -> bytes:
    """A student's request up to its Content-Length's value (made once per student)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: relay\r\nAuthorization: token {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
