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
from .inputs import CALIPER_DATA_VERSION, BuiltEvent

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
_OUR_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")
_OBJECT_KEYS = frozenset({"id", "type", "subject", "app", "course", "activity", "process"})


_NUMBERS = (int, float)
_ACTOR_KEYS = frozenset({"id", "type", "email"})
_NAME_KEYS = frozenset({"name"})
_COURSE_KEYS = frozenset({"id", "name"})
_ITEM_KEYS = frozenset({"type", "value"})
_EXTENSION_KEYS = frozenset({"runId", "courseId"})
_TSE_GENERATED = frozenset({"id", "type", "items"})
_ACE_GENERATED = frozenset({"id", "type", "items", "attempt"})
_ACE_GENERATED_EXT = frozenset({"id", "type", "items", "attempt", "extensions"})
_PCT_KEYS = frozenset({"pctCompleteApp"})
_isfinite = math.isfinite
_EVENT_TYPES = (dict, BuiltEvent)


def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def is_built_shape(event: Any) -> bool:
    """True if ``event`` has exactly the shape :mod:`.events` writes (a few microseconds).

    Written flat, without a call per field: this runs for every event a sink accepts. Any
    surprise (a list where a dict belongs, an unhashable value) is simply not our shape.
    """
    try:
        if type(event) not in _EVENT_TYPES or event.keys() != _KEYS:
            return False
        kind = event["type"]
        actor, obj, ext, g = (
            event["actor"],
            event["object"],
            event["extensions"],
            event["generated"],
        )
        app, course, activity = obj["app"], obj["course"], obj["activity"]
        if not (
            event["action"] == _ACTIONS[kind]
            and event["@context"] == CALIPER_DATA_VERSION
            and event["profile"] == "TimebackProfile"
            and _text(event["id"])
            and _text(event["session"])
            and type(actor) is dict
            and actor.keys() == _ACTOR_KEYS
            and actor["type"] == "TimebackUser"
            and _text(actor["id"])
            and _text(actor["email"])
            and type(obj) is dict
            and obj.keys() == _OBJECT_KEYS
            and _text(obj["id"])
            and obj["type"] == "TimebackActivityContext"
            and obj["subject"] in _SUBJECTS
            and type(app) is dict
            and app.keys() == _NAME_KEYS
            and _text(app["name"])
            and type(course) is dict
            and course.keys() == _COURSE_KEYS
            and _text(course["id"])
            and _text(course["name"])
            and type(activity) is dict
            and activity.keys() == _NAME_KEYS
            and _text(activity["name"])
            and obj["process"] is True
            and type(ext) is dict
            and ext.keys() == _EXTENSION_KEYS
            and _text(ext["runId"])
            and _text(ext["courseId"])
            and type(g) is dict
            and _text(g["id"])
            and g["type"] == _COLLECTIONS[kind]
            and type(g["items"]) is list
        ):
            return False
        allowed = _METRICS[kind]
        for item in g["items"]:
            if not (
                type(item) is dict
                and item.keys() == _ITEM_KEYS
                and item["type"] in allowed
                and type(item["value"]) in _NUMBERS
                and _isfinite(item["value"])
            ):
                return False
        if kind == "TimeSpentEvent":
            if g.keys() != _TSE_GENERATED:
                return False
        else:
            attempt = g["attempt"]
            if type(attempt) is not int or attempt < 1:
                return False
            if g.keys() != _ACE_GENERATED:
                pct = g["extensions"]
                if not (
                    g.keys() == _ACE_GENERATED_EXT
                    and type(pct) is dict
                    and pct.keys() == _PCT_KEYS
                    and type(pct["pctCompleteApp"]) in _NUMBERS
                    and _isfinite(pct["pctCompleteApp"])
                ):
                    return False
        when = event["eventTime"]
        if type(when) is not str or not _OUR_TIME.match(when):
            return False
        datetime.fromisoformat(when)  # a real date: not 2026-13-45
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return False
    return True


def check_event(event: Any) -> None:
    """Accept ``event`` or raise CaliperInputError naming what is wrong (see the module)."""
    if is_built_shape(event):
        return
    from .reference import validate_event

    validate_event(event)
