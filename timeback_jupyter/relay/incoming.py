"""An event as a user's server sent it: checked for our shape and read into what the relay
uses. Nothing here is trusted further than its shape; the rules are in :mod:`.ingest`."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import caliper
from ..caliper.inputs import uuid5_urn
from ..model import CourseRef, InvalidInput, parse_run_id
from .catalog import parse_activity_url

# uuid5 namespace of stored ids: one student's event ids can never take another's.
STORED_ID_NAMESPACE = uuid.UUID("0d3b8f6e-2a4c-5e71-9b1f-6c8a7d2e4f10")
MAX_ID_LENGTH = 2000
KIND_TIME = "time_spent"
KIND_COMPLETION = "completion"


_NAMESPACE = STORED_ID_NAMESPACE.bytes


def stored_id(user_name: str, event_id: str) -> str:
    """The id an event of ``user_name`` is kept and forwarded under: ``uuid.uuid5`` of the
    namespace and ``"<user>\n<id>"`` (spelled out: a third of its cost, on every event)."""
    return uuid5_urn(_NAMESPACE, f"{user_name}\n{event_id}")


# A server sends the same few activities and each run's id in every window: read once each.
_activity_url = functools.lru_cache(maxsize=4096)(parse_activity_url)
_run_id = functools.lru_cache(maxsize=65536)(parse_run_id)


# json.dumps with these options builds a new encoder on every call: made once here.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def body_hash(event: Any) -> str:
    """What "the same body" means: the event as canonical JSON (sorted keys)."""
    return hashlib.sha256(_canonical(event).encode("utf-8")).hexdigest()


def sent_id(event: Any) -> str | None:
    """The id the server gave the event, if it gave a usable one."""
    if not isinstance(event, dict):
        return None
    the_id = event.get("id")
    if not isinstance(the_id, str) or not the_id.strip() or len(the_id) > MAX_ID_LENGTH:
        return None
    return the_id


def shape_problem(event: Any) -> str | None:
    """None for an event of exactly the shape timeback-jupyter writes, else why not."""
    if caliper.is_built_shape(event):
        return None
    try:
        caliper.check_event(event)
    except caliper.CaliperInputError as err:
        return f"not a valid Timeback event: {err}"
    return (
        "a valid Caliper event, but not one timeback-jupyter writes (a TimeSpentEvent or an "
        "ActivityEvent/Completed of its exact shape)"
    )


@dataclass(frozen=True)
class Incoming:
    """What the relay reads of one event of our shape."""

    kind: str
    run_id: str
    at: float  # eventTime, POSIX seconds
    course: CourseRef
    slug: str
    activity_name: str
    metrics: dict[str, float]
    pct_complete: float | None

    @property
    def active(self) -> float:
        return self.metrics.get("active", 0.0)

    @property
    def inactive(self) -> float:
        return self.metrics.get("inactive", 0.0)


def read(event: dict[str, Any]) -> Incoming:
    """``event`` (already of our shape) read; InvalidInput for what the shape check lets by."""
    kind = KIND_TIME if event["type"] == "TimeSpentEvent" else KIND_COMPLETION
    run_id = _run_id(event["extensions"]["runId"], "extensions.runId")
    at = datetime.fromisoformat(event["eventTime"]).timestamp()
    course, slug = _activity_url(event["object"]["id"])
    if course.code is None and event["object"]["subject"] != course.subject:
        raise InvalidInput("object.subject", "does not match the activity URL's subject")
    generated = event["generated"]
    metrics: dict[str, float] = {}
    for item in generated["items"]:
        if item["type"] in metrics:
            raise InvalidInput("generated.items", f"{item['type']} appears twice")
        if item["value"] < 0:
            raise InvalidInput(f"generated.items.{item['type']}", "must not be negative")
        metrics[item["type"]] = float(item["value"])
    pct = generated.get("extensions", {}).get("pctCompleteApp")
    return Incoming(
        kind=kind,
        run_id=run_id,
        at=at,
        course=course,
        slug=slug,
        activity_name=event["object"]["activity"]["name"],
        metrics=metrics,
        pct_complete=None if pct is None else float(pct),
    )


@dataclass(frozen=True)
class Prepared:
    """One event as the rules take it, read before its transaction (no lock is held while an
    event is hashed and parsed): its id, stored key and body hash, and either what the relay
    reads of it or why it is refused."""

    sent: str | None  # None: no usable id, refused without being stored
    key: str = ""
    digest: str = ""
    kind: str = "?"  # the event's type as sent, for a refusal's row
    parsed: Incoming | None = None
    problem: str | None = None  # the refusal's reason, if its shape or content is wrong


def prepare(user_name: str, event: Any) -> Prepared:
    sent = sent_id(event)
    if sent is None:
        return Prepared(None)
    kind = event.get("type") if isinstance(event.get("type"), str) else "?"
    key, digest = stored_id(user_name, sent), body_hash(event)
    problem = shape_problem(event)
    if problem is not None:
        return Prepared(sent, key, digest, kind[:40], problem=str(InvalidInput("event", problem)))
    try:
        parsed = read(event)
    except InvalidInput as err:
        return Prepared(sent, key, digest, kind[:40], problem=str(err))
    return Prepared(sent, key, digest, kind[:40], parsed=parsed)
