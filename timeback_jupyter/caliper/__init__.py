"""Caliper events as Timeback takes them: who and what they are about (:mod:`.targets`, pure
and cheap), the events themselves as the runtime writes them (:mod:`.events`, plain dicts, no
SDK), the same built through the official SDK's factories and models (:mod:`.reference`, which
imports the SDK on first use: the golden reference, ``doctor``'s check) and the check a sink
makes before accepting an event (:mod:`.checks`)."""

from .checks import check_event, is_built_shape
from .events import (
    StoredEnvelope,
    completion_event,
    envelope,
    stored_envelope,
    time_spent_event,
    time_spent_event_ms,
)
from .inputs import CALIPER_DATA_VERSION, BuiltEvent
from .reference import (
    official_completion_event,
    official_envelope,
    official_time_spent_event,
    validate_event,
)
from .targets import Actor, CaliperInputError, Target, activity_url, course_url, iso_time, user_url

__all__ = [
    "CALIPER_DATA_VERSION",
    "Actor",
    "BuiltEvent",
    "CaliperInputError",
    "StoredEnvelope",
    "Target",
    "activity_url",
    "check_event",
    "completion_event",
    "course_url",
    "envelope",
    "is_built_shape",
    "iso_time",
    "official_completion_event",
    "official_envelope",
    "official_time_spent_event",
    "stored_envelope",
    "time_spent_event",
    "time_spent_event_ms",
    "user_url",
    "validate_event",
]
