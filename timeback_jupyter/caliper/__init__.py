"""Caliper events as Timeback takes them: who and what they are about (:mod:`.targets`, pure
and cheap) and the events themselves, built and checked with the official SDK (:mod:`.events`,
which imports the SDK only when an event is first built)."""

from .events import completion_event, envelope, time_spent_event, validate_event
from .targets import Actor, CaliperInputError, Target, activity_url, course_url, iso_time, user_url

__all__ = [
    "Actor",
    "CaliperInputError",
    "Target",
    "activity_url",
    "completion_event",
    "course_url",
    "envelope",
    "iso_time",
    "time_spent_event",
    "user_url",
    "validate_event",
]
