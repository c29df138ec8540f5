"""The student as a Caliper actor: their OneRoster sourcedId, configured or looked up by email.

:class:`ActorResolver` looks a sourcedId up once per student and process, the way the official
server SDK does (none or several users with the email is an error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..caliper import Actor, user_url
from ..config import Credentials, Timeback
from ..connection import Connection
from .errors import IdentityError, IdentityLookupError
from .oneroster import OneRosterLookup
from .student import STUDENT_ID_ENV, Student, check_email, normalize_email, redact_email

if TYPE_CHECKING:
    import httpx

# A lookup takes an email and answers the OneRoster user records that match it (asked for at
# most 2, to tell one from several), each a mapping with at least "sourcedId".
Lookup = Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]


def placeholder_sourced_id(student: Student) -> str:
    """A stand-in sourcedId for the local sink, stable per student and free of the email."""
    return f"local-{student.key}"


def actor_for(student: Student, oneroster_base_url: str, *, local: bool = False) -> Actor:
    """The Caliper actor. Needs the sourcedId; ``local`` falls back to the placeholder."""
    sourced_id = student.sourced_id
    if sourced_id is None:
        if not local:
            raise IdentityError(
                "the student's OneRoster sourcedId is unknown: set c.Timeback.student_id or "
                f"${STUDENT_ID_ENV}, or resolve it by email with ActorResolver"
            )
        sourced_id = placeholder_sourced_id(student)
    return Actor(id=user_url(oneroster_base_url, sourced_id), email=student.email)


class ActorResolver:
    """Resolves students to Caliper actors, looking up unknown sourcedIds by email once.

    Concurrent resolves of one email share a single lookup; failures are not remembered, so
    a student rostered later, or a network error, is tried again on the next call.
    """

    def __init__(self, oneroster_base_url: str, lookup: Lookup) -> None:
        self._base = oneroster_base_url
        self._lookup = lookup
        self._known: dict[str, str] = {}
        self._pending: dict[str, asyncio.Future[str]] = {}

    @classmethod
    def from_config(
        cls,
        config: Timeback,
        credentials: Credentials | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connection: Connection | None = None,
    ) -> ActorResolver:
        """The resolver against the configured environment's OneRoster API; ``connection``
        (made from the same config) shares its OAuth token with the Caliper sink."""
        base = config.oneroster_url
        lookup = OneRosterLookup(
            base,
            config.auth_url or None,
            credentials,
            environment=config.environment,
            timeout=config.request_timeout,
            transport=transport,
            connection=connection,
        )
        return cls(base, lookup)

    async def sourced_id(self, email: str) -> str:
        key = normalize_email(check_email(email, "lookup"))
        if key in self._known:
            return self._known[key]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._find_and_remember(key, email.strip()))
            # Retrieve the outcome even if every caller was cancelled meanwhile.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._pending[key] = task
        # One caller giving up must not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    async def resolve(self, student: Student) -> Actor:
        """The actor for ``student``: its configured sourcedId, else one found by email."""
        sourced_id = student.sourced_id or await self.sourced_id(student.email)
        return Actor(id=user_url(self._base, sourced_id), email=student.email)

    async def _find_and_remember(self, key: str, email: str) -> str:
        try:
            found = await self._find(email)
            self._known[key] = found
            return found
        finally:
            self._pending.pop(key, None)

    async def _find(self, email: str) -> str:
        users = await self._lookup(email)
        if len(users) == 0:
            raise IdentityError(
                f"no Timeback user with this email ({redact_email(email)}): check the student's "
                "email, or set c.Timeback.student_id"
            )
        if len(users) > 1:
            raise IdentityError(
                f"several Timeback users with this email ({redact_email(email)}): set "
                "c.Timeback.student_id to the right OneRoster sourcedId"
            )
        sourced_id = users[0].get("sourcedId")
        if not isinstance(sourced_id, str) or not sourced_id.strip():
            raise IdentityLookupError(
                "the Timeback user for this email has no sourcedId", retryable=False
            )
        return sourced_id.strip()

    async def aclose(self) -> None:
        closer = getattr(self._lookup, "aclose", None)
        if closer is not None:
            await closer()
