"""The local sink: our own events accepted without parsing them again, anything else still
checked by the official models (an old outbox row, a hand-made envelope)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter import caliper
from timeback_jupyter.config import ONEROSTER_BASE_URLS, Course
from timeback_jupyter.delivery import Drainer, LocalSink, RejectedError
from timeback_jupyter.model import Activity, CourseRef, Window
from timeback_jupyter.store import KIND_TIME_SPENT, Store

ROOT = Path(__file__).resolve().parent.parent
SENSOR = "https://nb.example.edu"
ACTOR = caliper.Actor("https://x.example/users/1", "s@example.edu")
TARGET = caliper.Target(
    app_name="App",
    sensor=SENSOR,
    environment="staging",
    oneroster_base_url=ONEROSTER_BASE_URLS["staging"],
    course=Course("Math", 3, None, {"staging": "m3"}, SENSOR),
    activity=Activity(id="a", name="A", course=CourseRef("Math", 3)),
)


def event(k: int = 0) -> dict[str, Any]:
    run_id = str(uuid.uuid4())
    window = Window(run_id, 1e9 + 15 * k, 1e9 + 15 * k + 15, 10.0, 5.0)
    return caliper.time_spent_event(window, run_id, ACTOR, TARGET)


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return caliper.envelope(list(events), SENSOR, 1e9)


def old_row() -> dict[str, Any]:
    """Valid for Timeback's models but not our shape: as an older release might have stored
    it (no runId, eventTime without milliseconds, an edApp)."""
    old = json.loads(json.dumps(event()))
    del old["extensions"]["runId"]
    old["eventTime"] = "2026-01-15T10:00:15Z"
    old["edApp"] = "https://nb.example.edu"
    return old


def test_our_events_are_accepted_without_the_sdk(tmp_path: Path) -> None:
    # In a fresh interpreter: building, enveloping and accepting our events never imports the
    # official SDK or pydantic, so nothing parsed them again.
    code = textwrap.dedent(
        """
        import asyncio, sys, uuid
        sys.path.insert(0, "tests")
        from test_local_sink import envelope, event
        from timeback_jupyter.delivery import LocalSink
        sink = LocalSink()
        asyncio.run(sink.send(envelope(*[event(k) for k in range(50)])))
        assert sink.accepted == 50
        sdk = ("pydantic", "timeback_caliper")
        print(sorted(m for m in sys.modules if m.split(".")[0] in sdk))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.asyncio
async def test_an_old_row_goes_through_the_official_models_and_is_accepted() -> None:
    sink = LocalSink()
    assert not caliper.is_built_shape(old_row())
    await sink.send(envelope(event(1), old_row(), event(2)))
    assert sink.accepted == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("object", "subject"), "Maths", "object.subject"),
        (("eventTime",), "2026-13-45T10:00:00.000Z", "eventTime"),  # our format, no such day
        (("generated", "items"), [{"type": "sleeping", "value": 10}], "generated.items"),
        (("actor",), "https://x.example/users/1", "actor"),
    ],
)
async def test_a_bad_event_from_elsewhere_is_refused_with_its_field(
    path: tuple[str, ...], value: Any, field: str
) -> None:
    bad = json.loads(json.dumps(event()))
    node = bad
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(RejectedError, match=field.replace(".", r"\.")) as caught:
        await LocalSink().send(envelope(event(1), bad))
    assert caught.value.event_ids == [bad["id"]]


@pytest.mark.asyncio
async def test_the_drainer_delivers_old_rows_and_dead_letters_bad_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite3")
    try:
        bad = json.loads(json.dumps(event(3)))
        bad["object"]["subject"] = "Maths"  # not one of Timeback's subjects
        good = [event(1), old_row(), event(2)]
        for e in (*good, bad):
            store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
        drainer = Drainer(store, LocalSink(), batch_size=10, retry_initial=0.01, retry_max=0.05)
        report = await drainer.flush(timeout=60)
        assert (report.sent, report.rejected, report.remaining) == (3, 1, 0)
        [letter] = store.dead_letters()
        assert letter.event_id == bad["id"]
        assert "object.subject" in letter.reason
        await drainer.stop()
    finally:
        store.close()
