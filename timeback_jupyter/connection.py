"""One API client's way to Timeback: its URLs and ONE OAuth token, for every API it calls.

The official SDK's ``TimebackProvider`` is what its own clients share (``TimebackClient`` hands
one to its Caliper and OneRoster clients): it resolves each service's URL and keeps one
``TokenManager`` (token cached until a minute before it expires, concurrent fetches shared,
refetched after a 401) per token URL. A :class:`Connection` builds that provider once; the
Caliper sink and the OneRoster student lookup made on one connection therefore ask the token
endpoint once between them, not once each.

The SDK (pydantic, httpx) is imported at the first call that needs it, not when a connection is
made: Jupyter makes one while it starts, when nothing is sent yet.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from .config import Credentials, Timeback

if TYPE_CHECKING:
    from timeback_common import TimebackProvider, TokenManager


def caliper_provider(
    credentials: Credentials,
    *,
    environment: str,
    base_url: str | None = None,
    auth_url: str | None = None,
    oneroster_base_url: str | None = None,
    timeout: float = 30.0,
) -> TimebackProvider:
    """The official provider of Timeback's Caliper and OneRoster URLs and OAuth tokens:
    ``environment``'s, or ``base_url`` (Caliper), ``oneroster_base_url`` and ``auth_url``
    where given (a proxy, a stand-in). Imports the SDK."""
    from timeback_common import PLATFORM_ENDPOINTS, TimebackProvider

    endpoints = PLATFORM_ENDPOINTS["BEYOND_AI"]
    if base_url or auth_url or oneroster_base_url:
        # One token URL for both services, as in the environment's own table: so one token.
        return TimebackProvider(
            services={
                "caliper": (base_url or endpoints["caliper"][environment]).rstrip("/"),
                "oneroster": (oneroster_base_url or endpoints["api"][environment]).rstrip("/"),
            },
            auth_url=auth_url or endpoints["token"][environment],
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            timeout=timeout,
        )
    return TimebackProvider(
        platform="BEYOND_AI",
        env=environment,  # type: ignore[arg-type]  # checked against ENVIRONMENTS by callers
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        timeout=timeout,
    )


class Connection:
    """One client's credentials and Timeback URLs; the official provider built at first use.

    ``None`` for a URL means the environment's. The secret is never in a repr or a message:
    :meth:`scrub` takes it out of text that came from elsewhere (a library, a server).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        environment: str = "staging",
        base_url: str | None = None,
        auth_url: str | None = None,
        oneroster_base_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials
        self.environment = environment
        self.base_url, self.auth_url = base_url or None, auth_url or None
        self.oneroster_base_url = oneroster_base_url or None
        self.timeout = timeout
        self._provider: TimebackProvider | None = None

    @classmethod
    def from_config(cls, config: Timeback, credentials: Credentials) -> Connection:
        """The connection ``c.Timeback`` describes (environment, URL overrides, timeout)."""
        return cls(
            credentials,
            environment=config.environment,
            base_url=config.base_url,
            auth_url=config.auth_url,
            oneroster_base_url=config.oneroster_base_url,
            timeout=config.request_timeout,
        )

    def __repr__(self) -> str:
        return f"Connection({self.environment!r}, client={self.credentials.masked!r})"

    def provider(self) -> TimebackProvider:
        """The official provider, made once (imports the SDK)."""
        if self._provider is None:
            self._provider = caliper_provider(
                self.credentials,
                environment=self.environment,
                base_url=self.base_url,
                auth_url=self.auth_url,
                oneroster_base_url=self.oneroster_base_url,
                timeout=self.timeout,
            )
        return self._provider

    def token_manager(self, service: str = "caliper") -> TokenManager:
        """The provider's token cache for ``service``'s token URL: one per URL, so the Caliper
        and OneRoster services (one token URL) share it."""
        manager = self.provider().get_token_manager(service)  # type: ignore[arg-type]
        if manager is None:  # only a provider built with no token URL; ours always has one
            raise ValueError(f"no token URL for the {service} service")
        return manager

    @property
    def token_url(self) -> str:
        """The OAuth2 token URL: ``auth_url``, else the environment's (imports the SDK)."""
        if self.auth_url is None:
            from timeback_common import BEYONDAI_TOKEN_URLS

            return BEYONDAI_TOKEN_URLS[self.environment]
        return self.auth_url

    def scrub(self, text: str) -> str:
        """``text`` without the secret, plain or in its HTTP Basic form."""
        cid, secret = self.credentials.client_id, self.credentials.client_secret
        basic = base64.b64encode(f"{cid}:{secret}".encode()).decode("ascii")
        for needle in (secret, basic):
            if needle:
                text = text.replace(needle, "***")
        return text
