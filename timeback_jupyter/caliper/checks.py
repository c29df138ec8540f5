"""The check a sink makes of an event it is about to accept: cheap for the events we build, the
official models for anything else.

An event in the outbox was built by :mod:`.events` from checked inputs, so it is valid by
construction (held equal to the SDK's own output by ``tests/test_caliper_golden.py``). A sink
still must not accept a malformed event from elsewhere (a row written by an older release, a
hand-made envelope): :func:`check_event` accepts at once an event of exactly the shape
:mod:`.events` writes (every key, type and format below, each of which the official models
accept; ``tests/test_caliper_golden.py`` shows that nothing this accepts is refused by them),
and sends anything else through the official models (:func:`.reference.validate_event`),
which accept it or name the bad field.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from ..model import SUBJECTS
from .inputs import CALIPER_DATA_VERSION

_HEAD = {"@context", "id", "type", "action", "actor", "object", "eventTime", "profile"}
_TAIL = {"generated", "session", "extensions"}
_KEYS = frozenset(_HEAD | _TAIL)
_ACTIONS = {"TimeSpentEvent": "SpentTime", "ActivityEvent": "Completed"}
_COLLECTIONS = {
    "TimeSpentEvent": "TimebackTimeSpentMetricsCollection",
    "ActivityEvent": "TimebackActivityMetricsCollection",
}
_METRICS = {
    "TimeSpentEvent": frozenset({"active", "inactive"}),
    "ActivityEvent": frozenset({"totalQuestions", "correctQuestions", "xpEarned", "masteredUnits"}),
}
_SUBJECTS = frozenset(SUBJECTS)
# What iso_time writes: UTC, whole milliseconds.
_OUR_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_OBJECT_KEYS = frozenset({"id", "type", "subject", "app", "course", "activity", "process"})


def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _named(value: Any, keys: frozenset[str] = frozenset({"name"})) -> bool:
    return type(value) is dict and value.keys() == keys and _text(value["name"])


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _items(items: Any, allowed: frozenset[str]) -> bool:
    if type(items) is not list:
        return False
    for item in items:
        if type(item) is not dict or item.keys() != {"type", "value"}:
            return False
        kind = item["type"]
        if type(kind) is not str or kind not in allowed or not _number(item["value"]):
            return False
    return True


def _generated(kind: str, g: Any) -> bool:
    if type(g) is not dict or not _text(g.get("id")) or g.get("type") != _COLLECTIONS[kind]:
        return False
    if not _items(g.get("items"), _METRICS[kind]):
        return False
    if kind == "TimeSpentEvent":
        return g.keys() == {"id", "type", "items"}
    attempt = g.get("attempt")
    if type(attempt) is not int or attempt < 1:
        return False
    if g.keys() == {"id", "type", "items", "attempt"}:
        return True
    ext = g.get("extensions")
    return (
        g.keys() == {"id", "type", "items", "attempt", "extensions"}
        and type(ext) is dict
        and ext.keys() == {"pctCompleteApp"}
        and _number(ext["pctCompleteApp"])
    )


def is_built_shape(event: Any) -> bool:
    """True if ``event`` has exactly the shape :mod:`.events` writes (a few microseconds)."""
    if type(event) is not dict or event.keys() != _KEYS:
        return False
    kind = event["type"]
    if type(kind) is not str or kind not in _ACTIONS or event["action"] != _ACTIONS[kind]:
        return False
    if event["@context"] != CALIPER_DATA_VERSION or event["profile"] != "TimebackProfile":
        return False
    if not (_text(event["id"]) and _text(event["session"])):
        return False
    actor, obj, ext = event["actor"], event["object"], event["extensions"]
    if type(actor) is not dict or actor.keys() != {"id", "type", "email"}:
        return False
    if actor["type"] != "TimebackUser" or not (_text(actor["id"]) and _text(actor["email"])):
        return False
    if type(obj) is not dict or obj.keys() != _OBJECT_KEYS:
        return False
    if not (
        _text(obj["id"])
        and obj["type"] == "TimebackActivityContext"
        and type(obj["subject"]) is str
        and obj["subject"] in _SUBJECTS
        and _named(obj["app"])
        and _named(obj["course"], frozenset({"id", "name"}))
        and _text(obj["course"]["id"])
        and _named(obj["activity"])
        and obj["process"] is True
    ):
        return False
    if type(ext) is not dict or not (_text(ext.get("runId")) and _text(ext.get("courseId"))):
        return False
    if ext.keys() != {"runId", "courseId"}:
        return False
    when = event["eventTime"]
    if type(when) is not str or not _OUR_TIME.match(when):
        return False
    try:
        datetime.fromisoformat(when)
    except ValueError:
        return False
    return _generated(kind, event["generated"])


def check_event(event: Any) -> None:
    """Accept ``event`` or raise CaliperInputError naming what is wrong (see the module)."""
    if is_built_shape(event):
        return
    from .reference import validate_event

    validate_event(event)
