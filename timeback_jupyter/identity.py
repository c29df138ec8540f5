"""Who the student is: an email from config, env or the JupyterHub user, and their OneRoster id.

Notebooks and runs store only :func:`student_key`, a short hash of the email. Caliper needs the
student's OneRoster ``sourcedId``; :class:`ActorResolver` finds it by email the way the official
server SDK does (``users.list(where={"email": ...}, limit=2)``: none or several is an error) and
remembers it, so the lookup happens once per student and process.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .caliper import Actor, user_url
from .config import ROSTERING_PATH, Credentials, Timeback
from .connection import Connection

# httpx and timeback_common are imported when a lookup first runs: Jupyter imports this module
# at start, and most servers never look a student up (the local sink, a configured student_id).
if TYPE_CHECKING:
    import httpx

__all__ = [
    "ActorResolver",
    "IdentityError",
    "IdentityLookupError",
    "OneRosterLookup",
    "Student",
    "actor_for",
    "email_filter",
    "placeholder_sourced_id",
    "resolve_student",
    "student_key",
]

EMAIL_ENV = "TIMEBACK_STUDENT_EMAIL"
# The student of a machine whose events stay local, when nothing else names one.
LOCAL_EMAIL_TEMPLATE = "{username}@students.local"
STUDENT_ID_ENV = "TIMEBACK_STUDENT_ID"
HUB_USER_ENV = "JUPYTERHUB_USER"
_HOW_TO_SET = (
    f"set c.Timeback.student_email, ${EMAIL_ENV}, or c.Timeback.student_email_template "
    "(e.g. '{username}@school.edu', filled from the JupyterHub user)"
)

# A lookup takes an email and answers the OneRoster user records that match it (asked for at
# most 2, to tell one from several), each a mapping with at least "sourcedId".
Lookup = Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]
# How timeback_common 0.4's TokenManager words a refused token request.
_TOKEN_STATUS = re.compile(r"Failed to obtain access token: (\d{3})\b")


class IdentityError(ValueError):
    """The student cannot be identified; the message says what to set or what went wrong."""


class IdentityLookupError(IdentityError):
    """The OneRoster lookup itself failed. ``retryable``: a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _normalize(email: str) -> str:
    return email.strip().lower()


def student_key(email: str) -> str:
    """What notebooks and runs store instead of the email: 16 hex chars of its sha256."""
    if not isinstance(email, str) or not email.strip():
        raise IdentityError("student email: required to derive the student key")
    return hashlib.sha256(_normalize(email).encode("utf-8")).hexdigest()[:16]


def _redact(email: str) -> str:
    # As the SDK logs it: enough to recognise, not enough to harvest.
    local, _, domain = email.rpartition("@")
    if not local:
        return "***"
    if len(local) <= 2:
        return f"**@{domain}"
    return f"{local[0]}***{local[-1]}@{domain}"


def _check_email(email: str, source: str) -> str:
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
        object.__setattr__(self, "email", _check_email(self.email, "Student.email"))
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
        return Student(_check_email(config.student_email, "c.Timeback.student_email"), sourced_id)
    if environ.get(EMAIL_ENV, "").strip():
        return Student(_check_email(environ[EMAIL_ENV], f"${EMAIL_ENV}"), sourced_id)
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
    return Student(_check_email(email, "c.Timeback.student_email_template"), sourced_id)


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


def email_filter(email: str) -> str:
    """The OneRoster filter the SDK sends for ``where={"email": email}`` (quotes doubled)."""
    return "email='" + email.replace("'", "''") + "'"


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
        key = _normalize(_check_email(email, "lookup"))
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
                f"no Timeback user with this email ({_redact(email)}): check the student's "
                "email, or set c.Timeback.student_id"
            )
        if len(users) > 1:
            raise IdentityError(
                f"several Timeback users with this email ({_redact(email)}): set "
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


class OneRosterLookup:
    """The default lookup: ``GET {base}/ims/oneroster/rostering/v1p2/users`` with
    ``filter=email='...'&limit=2``, authenticated by OAuth2 client credentials.

    Same query as the official ``timeback_oneroster`` client builds for the SDK. The token
    comes from ``connection`` (the official SDK's token cache), shared with the Caliper sink
    made on the same connection; without one the lookup makes its own. A stale token is
    fetched again once after a 401. ``auth_url`` None is the ``environment``'s token URL. The
    HTTP client (and the SDK) are made at the first lookup, not here: this is built while
    Jupyter starts.
    """

    def __init__(
        self,
        oneroster_base_url: str,
        auth_url: str | None,
        credentials: Credentials | None,
        *,
        environment: str = "staging",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        connection: Connection | None = None,
    ) -> None:
        if credentials is None:
            raise IdentityError(
                "looking up the student's OneRoster id needs API credentials: set "
                "TIMEBACK_CLIENT_ID and TIMEBACK_CLIENT_SECRET, or c.Timeback.student_id"
            )
        self._users_url = f"{oneroster_base_url.rstrip('/')}{ROSTERING_PATH}/users"
        if connection is None:
            connection = Connection(
                credentials,
                environment=environment,
                auth_url=auth_url,
                oneroster_base_url=oneroster_base_url,
                timeout=timeout,
            )
        elif (connection.credentials, connection.auth_url) != (credentials, auth_url or None):
            raise IdentityError("the lookup's connection was made from other settings")
        self._connection = connection
        self._credentials = credentials
        self._timeout, self._transport = timeout, transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"OneRosterLookup({self._users_url!r}, credentials={self._credentials.masked!r})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        return self._client

    def _token_url(self) -> str:
        return self._connection.token_url

    async def __call__(self, email: str) -> Sequence[Mapping[str, Any]]:
        # Parameter order as the official paginator sends them.
        params = {"filter": email_filter(email), "limit": 2, "offset": 0}
        response = await self._get(params)
        if response.status_code == 401:
            self._connection.token_manager("oneroster").invalidate()
            response = await self._get(params)
        if response.status_code in (401, 403):
            raise IdentityLookupError(
                f"OneRoster refused the API credentials (HTTP {response.status_code}) "
                "looking up the student",
                retryable=False,
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise IdentityLookupError(
                f"OneRoster is unavailable (HTTP {response.status_code}); will retry",
                retryable=True,
            )
        if response.status_code != 200:
            raise IdentityLookupError(
                f"OneRoster answered HTTP {response.status_code} to the user lookup: "
                f"{response.text[:200]}",
                retryable=False,
            )
        try:
            users = response.json().get("users")
        except (ValueError, AttributeError):
            users = None
        if not isinstance(users, list) or not all(isinstance(u, Mapping) for u in users):
            raise IdentityLookupError(
                "OneRoster answered the user lookup without a 'users' list", retryable=False
            )
        return users

    async def _get(self, params: dict[str, Any]) -> httpx.Response:
        import httpx

        token = await self._access_token()
        try:
            return await self._http().get(
                self._users_url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as err:
            raise IdentityLookupError(
                f"cannot reach OneRoster to look up the student ({type(err).__name__})",
                retryable=True,
            ) from None

    async def _access_token(self) -> str:
        import httpx

        try:
            return await self._connection.token_manager("oneroster").get_token()
        except httpx.HTTPError as err:
            raise IdentityLookupError(
                f"cannot reach the Timeback token endpoint ({type(err).__name__})",
                retryable=True,
            ) from None
        except Exception as err:
            # The SDK's token manager raises a bare Exception naming the HTTP status.
            found = _TOKEN_STATUS.match(str(err))
            if found is None:
                raise IdentityLookupError(
                    "the Timeback token endpoint answered without an access_token",
                    retryable=False,
                ) from None
            status = int(found.group(1))
            raise IdentityLookupError(
                f"the Timeback token endpoint refused client {self._credentials.masked} "
                f"(HTTP {status})",
                retryable=status == 429 or status >= 500,
            ) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
