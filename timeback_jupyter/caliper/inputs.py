"""What both ways of building an event share: the checks of its inputs and the values derived
from them (ids, run id, seconds, metric numbers). Pure, no SDK."""

from __future__ import annotations

import hashlib
import os
import re
import uuid

from ..model import Completion, InvalidInput, parse_run_id
from .targets import CaliperInputError


class BuiltEvent(dict):  # type: ignore[type-arg]
    """An event as :mod:`.events` built it from checked inputs: valid by construction (the
    golden test holds it equal to the SDK's own output). The outbox records that it was built
    so (``outbox.checked``), and a sink need not check such an event again. A copy (``dict(e)``,
    a JSON round trip) is a plain dict again and is checked like any other event; the builders'
    callers hand their events to the store unchanged."""

    __slots__ = ()


# The data version the SDK 0.4 sends (timeback_caliper.CALIPER_DATA_VERSION; a test checks it).
CALIPER_DATA_VERSION = "http://purl.imsglobal.org/ctx/caliper/v1p2"
# The official server SDK's datetime check for endedAt (handlers/activity/schema.py).
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# An event id must be an IRI: urn:uuid:..., https://..., anything with a scheme.
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
# What str(uuid.UUID(...)) writes, and so what parse_run_id returns.
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# Seeds generated.id when the event id is fixed, so rebuilding an event yields the same dict.
_METRICS_NAMESPACE = uuid.UUID("6f1c1f5e-6a43-4c55-9d6e-2b4a8f0c7e11")


def _uuid4_urns() -> tuple[str, str]:
    # Two str(uuid.uuid4()) from one read of urandom, written directly: uuid.UUID's
    # constructor and __str__ were a quarter of an event's build.
    raw = bytearray(os.urandom(32))
    urns = []
    for at in (0, 16):
        raw[at + 6] = (raw[at + 6] & 0x0F) | 0x40  # version 4
        raw[at + 8] = (raw[at + 8] & 0x3F) | 0x80  # RFC 4122 variant
        x = raw[at : at + 16].hex()
        urns.append(f"urn:uuid:{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}")
    return urns[0], urns[1]


def uuid5_urn(namespace: bytes, name: str) -> str:
    """``f"urn:uuid:{uuid.uuid5(UUID(bytes=namespace), name)}"``, spelled out: uuid.UUID's
    constructor and __str__ were most of it, once or twice on every event the relay takes."""
    digest = bytearray(hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_METRICS_NAMESPACE_BYTES = _METRICS_NAMESPACE.bytes


def event_ids(event_id: str | None) -> tuple[str, str]:
    """The event id and its generated.id: fresh, or derived from a fixed event id."""
    if event_id is None:
        return _uuid4_urns()
    if not isinstance(event_id, str) or not _IRI.match(event_id.strip()):
        raise CaliperInputError("event_id", f"{event_id!r} is not an IRI such as urn:uuid:<uuid>")
    event_id = event_id.strip()
    return event_id, uuid5_urn(_METRICS_NAMESPACE_BYTES, event_id)


def checked_run_id(run_id: str, of: str, field: str) -> str:
    if run_id == of and type(run_id) is str and _CANONICAL_UUID.match(run_id):
        return run_id  # already what parse_run_id would make of it
    try:
        parsed = parse_run_id(run_id, "run_id")
    except InvalidInput as err:
        raise CaliperInputError("run_id", err.problem) from None
    if parsed != parse_run_id(of, field):
        raise CaliperInputError("run_id", f"{parsed} is not the {field} ({of})")
    return parsed


def checked_attempt(attempt: int) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise CaliperInputError("attempt", f"must be an integer >= 1, got {attempt!r}")
    return attempt


def seconds(value: float) -> float:
    # Whole milliseconds, divided like the SDK's elapsedMs / 1000, so values compare equal.
    return round(value * 1000) / 1000


def json_number(value: float | int) -> float | int:
    # A browser's JSON.stringify writes 10.0 as 10; so does the SDK's wire for those payloads.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def completion_metrics(completion: Completion) -> list[tuple[str, float | int]]:
    """The SDK's order (build_activity_metrics), each only when present."""
    present = [
        ("totalQuestions", completion.total_questions),
        ("correctQuestions", completion.correct_questions),
        ("xpEarned", completion.xp_earned),
        ("masteredUnits", completion.mastered_units),
    ]
    return [(kind, json_number(value)) for kind, value in present if value is not None]
