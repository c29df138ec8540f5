"""Who the student is: an email from config, env or the JupyterHub user, and the key derived
from it (what notebooks and runs store instead of the email)."""

from __future__ import annotations

import getpass
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from ..config import Timeback
from .errors import IdentityError

EMAIL_ENV = "TIMEBACK_STUDENT_EMAIL"
# The student of a machine whose events stay local, when nothing else names one.
LOCAL_EMAIL_TEMPLATE = "{username}@students.local"
STUDENT_ID_ENV = "TIMEBACK_STUDENT_ID"
HUB_USER_ENV = "JUPYTERHUB_USER"
# In hub mode the relay names the student to Timeback (its own email template or roster); the
# server's own email is only a local label, made so that it cannot be mistaken for an address.
HUB_EMAIL_TEMPLATE = "{username}@jupyterhub.invalid"
LOG = logging.getLogger("timeback_jupyter.identity")
_HOW_TO_SET = (
    f"set c.Timeback.student_email, ${EMAIL_ENV}, or c.Timeback.student_email_template "
    "(e.g. '{username}@school.edu', filled from the JupyterHub user)"
)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def student_key(email: str) -> str:
    """What notebooks and runs store instead of the email: 16 hex chars of its sha256."""
    if not isinstance(email, str) or not email.strip():
        raise IdentityError("student email: required to derive the student key")
    return hashlib.sha256(normalize_email(email).encode("utf-8")).hexdigest()[:16]


def redact_email(email: str) -> str:
    # As the SDK logs it: enough to recognise, not enough to harvest.
    local, _, domain = email.rpartition("@")
    if not local:
        return "***"
    if len(local) <= 2:
        return f"**@{domain}"
    return f"{local[0]}***{local[-1]}@{domain}"


def check_email(email: str, source: str) -> str:
    """The email, stripped; an :class:`IdentityError` naming ``source`` if it is not one."""
    text = email.strip()
    local, at, domain = text.partition("@")
    if not at or not local or not domain or "@" in domain or any(c.isspace() for c in text):
        raise IdentityError(
            f"student email from {source}: {text!r} is not an email address (name@domain)"
        )
    return text


@dataclass(frozen=True)
class Student:
    """The student: their email, OneRoster sourcedId when known, and the derived key."""

    email: str
    sourced_id: str | None = None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", check_email(self.email, "Student.email"))
        sourced = self.sourced_id.strip() if isinstance(self.sourced_id, str) else None
        object.__setattr__(self, "sourced_id", sourced or None)
        object.__setattr__(self, "key", student_key(self.email))


def resolve_student(
    config: Timeback,
    environ: Mapping[str, str],
    hub_user: str | None = None,
    *,
    local: bool = False,
    getuser: Callable[[], str] = getpass.getuser,
) -> Student:
    """The student from, in order: config, ``$TIMEBACK_STUDENT_EMAIL``, the email template.

    The template is filled with ``hub_user``, else ``$JUPYTERHUB_USER``, else the OS user.
    With ``local`` (events kept on this machine) and no template configured,
    :data:`LOCAL_EMAIL_TEMPLATE` stands in: nothing leaves the machine, so the user name is
    identity enough, and the product runs with no setup.
    """
    sourced_id = config.student_id.strip() or environ.get(STUDENT_ID_ENV, "").strip() or None
    if config.student_email.strip():
        return Student(check_email(config.student_email, "c.Timeback.student_email"), sourced_id)
    if environ.get(EMAIL_ENV, "").strip():
        return Student(check_email(environ[EMAIL_ENV], f"${EMAIL_ENV}"), sourced_id)
    template = config.student_email_template.strip() or (LOCAL_EMAIL_TEMPLATE if local else "")
    if not template:
        raise IdentityError(f"no student identity: {_HOW_TO_SET}")
    username = (hub_user or "").strip() or environ.get(HUB_USER_ENV, "").strip()
    if not username:
        try:
            username = getuser().strip()
        except (OSError, KeyError):  # no passwd entry, e.g. a container's arbitrary uid
            username = ""
    if not username:
        raise IdentityError(
            "no student identity: c.Timeback.student_email_template needs a user name, and "
            f"there is no JupyterHub user (${HUB_USER_ENV}) nor OS user; {_HOW_TO_SET}"
        )
    try:
        email = template.format(username=username)
    except (KeyError, IndexError, ValueError) as err:
        raise IdentityError(
            f"c.Timeback.student_email_template {template!r} cannot be filled: the only "
            f"placeholder is {{username}} ({type(err).__name__}: {err})"
        ) from None
    return Student(check_email(email, "c.Timeback.student_email_template"), sourced_id)


def hub_student(config: Timeback, environ: Mapping[str, str]) -> Student:
    """The student of a server on JupyterHub whose events go through the relay: the hub user
    (``$JUPYTERHUB_USER``) and nobody else.

    Whatever else names a student (``c.Timeback.student_email``, ``student_id``,
    ``student_email_template``, ``$TIMEBACK_STUDENT_EMAIL``, ``$TIMEBACK_STUDENT_ID``) is the
    student's own to set and is ignored, with one warning naming it: the relay stamps the
    actor from the hub user its token belongs to anyway.
    """
    ignored = [
        f"c.Timeback.{name}"
        for name in ("student_email", "student_id", "student_email_template")
        if str(getattr(config, name)).strip()
    ] + [f"${name}" for name in (EMAIL_ENV, STUDENT_ID_ENV) if environ.get(name, "").strip()]
    if ignored:
        LOG.warning(
            "timeback: on JupyterHub the student is the hub user; ignoring %s",
            ", ".join(ignored),
        )
    username = environ.get(HUB_USER_ENV, "").strip()
    if not username:
        raise IdentityError(
            f"no student identity: ${HUB_USER_ENV} is not set, and in hub mode "
            "($TIMEBACK_RELAY_URL set) the student is the JupyterHub user only"
        )
    email = HUB_EMAIL_TEMPLATE.format(username=quote(username, safe=""))
    return Student(check_email(email, f"${HUB_USER_ENV}"))
