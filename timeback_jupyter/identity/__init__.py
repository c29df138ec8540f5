"""Who the student is: an email from config, env or the JupyterHub user, and their OneRoster id.

Notebooks and runs store only :func:`student_key`, a short hash of the email. Caliper needs the
student's OneRoster ``sourcedId``; :class:`ActorResolver` finds it by email the way the official
server SDK does (``users.list(where={"email": ...}, limit=2)``: none or several is an error) and
remembers it, so the lookup happens once per student and process.

The parts: :mod:`.student` (the email and its key), :mod:`.actor` (the Caliper actor and the
resolver), :mod:`.oneroster` (the lookup by email), :mod:`.errors`. None imports Jupyter.
"""

from .actor import ActorResolver, Lookup, actor_for, placeholder_sourced_id
from .errors import IdentityError, IdentityLookupError
from .oneroster import OneRosterLookup, email_filter
from .student import (
    EMAIL_ENV,
    HUB_EMAIL_TEMPLATE,
    HUB_USER_ENV,
    LOCAL_EMAIL_TEMPLATE,
    STUDENT_ID_ENV,
    Student,
    hub_student,
    resolve_student,
    student_key,
)

__all__ = [
    "EMAIL_ENV",
    "HUB_EMAIL_TEMPLATE",
    "HUB_USER_ENV",
    "LOCAL_EMAIL_TEMPLATE",
    "STUDENT_ID_ENV",
    "ActorResolver",
    "IdentityError",
    "IdentityLookupError",
    "Lookup",
    "OneRosterLookup",
    "Student",
    "actor_for",
    "email_filter",
    "hub_student",
    "placeholder_sourced_id",
    "resolve_student",
    "student_key",
]
