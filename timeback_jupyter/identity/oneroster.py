"""The OneRoster lookup: the users with an email, asked of Timeback's rostering API."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import ROSTERING_PATH, Credentials
from ..connection import Connection
from .errors import IdentityError, IdentityLookupError

# httpx and timeback_common are imported when a lookup first runs: Jupyter imports this module
# at start, and most servers never look a student up (the local sink, a configured student_id).
if TYPE_CHECKING:
    import httpx

# How timeback_common 0.4's TokenManager words a refused token request.
_TOKEN_STATUS = re.compile(r"Failed to obtain access token: (\d{3})\b")


def email_filter(email: str) -> str:
    """The OneRoster filter the SDK sends for ``where={"email": email}`` (quotes doubled)."""
    return "email='" + email.replace("'", "''") + "'"


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
