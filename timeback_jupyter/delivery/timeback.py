"""The Timeback sink: envelopes to the Caliper API through the official ``CaliperClient``.

The official SDK (timeback_caliper, timeback_common: pydantic and httpx) is imported where an
envelope is checked or sent, not here: Jupyter loads this module at start, when nothing is
sent yet, and the import costs more than the rest of the extension. Events themselves are built
without it (caliper/events.py); the SDK's models stay the reference (caliper/reference.py).
"""

from __future__ import annotations

import json
import logging
import math
from functools import cache
from typing import TYPE_CHECKING, Any

from .. import caliper
from ..config import ENVIRONMENTS, Credentials, Timeback
from ..connection import Connection
from .errors import DeliveryError, RejectedError, RetryableError
from .sink import JobOutcome, check_envelope

if TYPE_CHECKING:
    from timeback_caliper import CaliperClient

LOG = logging.getLogger("timeback_jupyter.delivery")

# Answers where the request may have been processed before the failure reached us.
_AMBIGUOUS_STATUSES = {408, 502, 504}


class _AskedToWait(Exception):
    """Raised from inside the official transport instead of letting it sleep and retry."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__("asked to wait")
        self.seconds = seconds


class EncodedJson:
    """A request body already encoded as JSON, posted as it is by the transport below."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body


class _EncodedBodies:
    """The official transport's httpx client, posting an :class:`EncodedJson` body as its
    bytes (``content=``) instead of encoding it again (``json=``); all else is the client's."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def request(self, method: str, url: str, *, json: Any = None, **kw: Any) -> Any:
        if isinstance(json, EncodedJson):
            return await self._client.request(method, url, content=json.body, **kw)
        return await self._client.request(method, url, json=json, **kw)


@cache
def _single_shot_transport() -> type[Any]:
    """The official Caliper transport with its own retry loop cut short.

    ``BaseTransport.request`` retries 429/503 up to 3 times, sleeping in-process (and a 429 on
    its last try loses the Retry-After). There is no switch for that in timeback-common 0.4,
    so we hook the one place it consults before sleeping, ``_parse_retry_after``, and turn the
    first 429/503 into an exception carrying the server's delay. Our drainer does the backoff,
    durably, without holding a batch in memory for minutes.

    It also posts a body already encoded (:class:`EncodedJson`, the outbox's stored texts
    spliced into an envelope) as it is, through the same ``request``: the same token, headers,
    timeout and answers as every other request, without pydantic and JSON passes over events
    the relay built and checked itself (:meth:`TimebackSink.send_stored`).

    A class made on first use because its base class is the SDK's (imported lazily).
    """
    from timeback_caliper.lib.transport import Transport

    class SingleShotTransport(Transport):
        def _parse_retry_after(self, retry_after: str | None, attempt: int) -> float:
            seconds = super()._parse_retry_after(retry_after, attempt) if retry_after else None
            raise _AskedToWait(seconds)

        async def _get_client(self) -> Any:
            return _EncodedBodies(await super()._get_client())

    return SingleShotTransport


class TimebackSink:
    """Sends envelopes to the Timeback Caliper API with the official ``CaliperClient``.

    ``environment`` picks Timeback's URLs; ``base_url``/``auth_url`` override them (a proxy,
    a stand-in). The client secret is never put in a message, a log record or a repr.
    ``connection``, made from the same settings, shares its provider and OAuth token with
    the other clients made on it (the OneRoster student lookup); without one the sink makes
    its own.
    The settings are checked here; the official client is built at the first send, since
    importing it is most of what the extension would cost Jupyter's start.
    """

    name = "timeback"
    jobs = True  # Timeback stores events when the job it answers completes

    def __init__(
        self,
        credentials: Credentials,
        *,
        environment: str = "staging",
        base_url: str | None = None,
        auth_url: str | None = None,
        timeout: float = 30.0,
        connection: Connection | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise DeliveryError(
                "the timeback sink needs credentials: set TIMEBACK_CLIENT_ID and "
                "TIMEBACK_CLIENT_SECRET (or TIMEBACK_API_CLIENT_ID / TIMEBACK_API_CLIENT_SECRET)"
            )
        if environment not in ENVIRONMENTS:
            raise DeliveryError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise DeliveryError(f"request timeout must be a positive number, got {timeout!r}")
        if connection is None:
            connection = Connection(
                credentials,
                environment=environment,
                base_url=base_url,
                auth_url=auth_url,
                timeout=timeout,
            )
        mine = (credentials, environment, base_url or None, auth_url or None, timeout)
        theirs = (connection.credentials, connection.environment, connection.base_url)
        if mine != (*theirs, connection.auth_url, connection.timeout):
            raise DeliveryError("the sink's connection was made from other settings")
        self._credentials = credentials
        self._connection = connection
        self.environment = environment
        self._client: CaliperClient | None = None
        self._transport: Any = None
        self._endpoint = ""

    def _caliper(self) -> CaliperClient:
        """The official client, built once on first use (see the class docstring)."""
        if self._client is None:
            from timeback_caliper import CaliperClient

            provider = self._connection.provider()
            endpoint = provider.get_endpoint("caliper")
            transport = _single_shot_transport()(
                base_url=endpoint.base_url,
                token_manager=self._connection.token_manager("caliper"),
                paths=provider.get_paths("caliper"),
                timeout=provider.timeout,
            )
            self._endpoint = endpoint.base_url
            self._transport = transport
            self._client = CaliperClient(transport=transport)
        return self._client

    @property
    def base_url(self) -> str:
        """The Caliper API's base URL, as the official client resolves it."""
        self._caliper()
        return self._endpoint

    @classmethod
    def from_config(
        cls,
        config: Timeback,
        credentials: Credentials | None,
        connection: Connection | None = None,
    ) -> TimebackSink:
        """The sink ``c.Timeback`` describes; ``connection`` as in the class docstring."""
        if credentials is None:
            raise DeliveryError(
                "c.Timeback.sink is 'timeback' but no credentials were found: set "
                "TIMEBACK_CLIENT_ID and TIMEBACK_CLIENT_SECRET in the server's environment"
            )
        return cls(
            credentials,
            environment=config.environment,
            base_url=config.base_url or None,
            auth_url=config.auth_url or None,
            timeout=config.request_timeout,
            connection=connection,
        )

    def __repr__(self) -> str:
        return f"TimebackSink({self.base_url!r}, client={self._credentials.masked!r})"

    def _scrub(self, text: str) -> str:
        return self._connection.scrub(text)

    async def send(self, envelope: dict[str, Any]) -> str | None:
        """Send one envelope; the id of Timeback's job for it (None if the API gave none)."""
        import pydantic
        from timeback_caliper import CaliperEnvelope

        check_envelope(envelope)
        try:
            wrapped = CaliperEnvelope.model_validate(envelope)
        except pydantic.ValidationError as err:
            raise RejectedError(f"envelope: {err.errors()[0].get('msg', 'invalid')}") from None
        client = self._caliper()
        try:
            result = await client.events.send_envelope(wrapped)
        except Exception as err:
            raise self._classify(err) from None
        return result.job_id or None

    async def send_stored(self, envelope: caliper.StoredEnvelope) -> str | None:
        """:meth:`send` for an envelope of events as the outbox stored them (JSON texts): the
        texts are posted as they are, through the official transport. Only the events in
        ``envelope.unchecked`` (none of the relay's: it built and checked every one) are
        parsed, and checked as :meth:`send` checks them."""
        for i in envelope.unchecked:
            try:
                caliper.check_event(json.loads(envelope.texts[i]))
            except (ValueError, caliper.CaliperInputError) as err:
                raise RejectedError(f"envelope.data[{i}]: {err}") from None
        client = self._caliper()
        if getattr(client, "_event_transformer", None) is not None:  # it rewrites events: its way
            return await self.send(json.loads(envelope.text()))
        from timeback_caliper.types import SendEventsResult

        body = EncodedJson(envelope.text().encode())
        try:
            answer = await self._transport.post(self._transport.paths.send, body)
        except Exception as err:
            raise self._classify(err) from None
        if not answer:
            return None
        return SendEventsResult(**answer).job_id or None

    def _classify(self, err: Exception) -> RetryableError | RejectedError:
        """Map what the official client raises onto retry-or-reject, without the secret."""
        import httpx
        from timeback_caliper.exceptions import (
            APIError,
            AuthenticationError,
            ForbiddenError,
            RateLimitError,
        )

        if isinstance(err, _AskedToWait):
            return RetryableError(
                "Timeback is rate-limiting or unavailable (HTTP 429/503)", retry_after=err.seconds
            )
        if isinstance(err, RateLimitError):
            return RetryableError(
                self._scrub(f"Timeback is rate-limiting: {err}"), retry_after=err.retry_after
            )
        if isinstance(err, AuthenticationError | ForbiddenError):
            # Bad or expired credentials are the server's configuration, not the events':
            # keep them queued (the token is refreshed on the next try) and say so.
            return RetryableError(
                self._scrub(f"Timeback refused our credentials ({err}); check the client id")
            )
        if isinstance(err, APIError):
            status = err.status_code
            text = self._scrub(str(err))
            if status is None or status in _AMBIGUOUS_STATUSES:
                return RetryableError(
                    f"Timeback did not answer in time: {text}", maybe_delivered=True
                )
            if 400 <= status < 500:
                return RejectedError(self._scrub(err.message or text))
            return RetryableError(f"Timeback failed: {text}")
        if isinstance(err, httpx.TimeoutException):
            return RetryableError("Timeback did not answer in time", maybe_delivered=True)
        if isinstance(err, httpx.ConnectError):
            return RetryableError(self._scrub(f"cannot reach Timeback at {self.base_url}: {err}"))
        if isinstance(err, httpx.TransportError):
            # The request went out; the connection broke before an answer came back.
            return RetryableError(
                self._scrub(f"connection to Timeback lost: {type(err).__name__}: {err}"),
                maybe_delivered=True,
            )
        # The token manager raises a bare Exception("Failed to obtain access token: ...").
        return RetryableError(self._scrub(f"{type(err).__name__}: {err}"))

    async def exists(self, event_id: str) -> bool | None:
        import pydantic
        from timeback_caliper.exceptions import APIError, NotFoundError

        client = self._caliper()
        try:
            await client.events.get(event_id)
        except NotFoundError:
            return False
        except APIError as err:
            return False if err.status_code == 404 else None
        except pydantic.ValidationError:
            return True  # answered 200 for that id, in a shape the client did not expect
        except Exception as err:
            LOG.debug("cannot tell whether %s was stored: %s", event_id, self._scrub(str(err)))
            return None
        return True

    async def job_status(self, job_id: str) -> JobOutcome | None:
        """The state of Timeback's job ``job_id`` (``client.jobs.get_status``); None when the
        API cannot tell now (down, slow, rate-limiting)."""
        from timeback_caliper.exceptions import APIError, NotFoundError, UnsupportedOperationError

        client = self._caliper()
        try:
            status = await client.jobs.get_status(job_id)
        except UnsupportedOperationError:
            # A platform that hands out job ids but cannot report them: accepted is all we get.
            return JobOutcome("completed", "this Timeback platform does not report jobs")
        except NotFoundError:
            return JobOutcome("gone", f"Timeback no longer knows job {job_id}")
        except APIError as err:
            if err.status_code == 404:
                return JobOutcome("gone", f"Timeback no longer knows job {job_id}")
            LOG.debug("cannot tell how job %s is doing: %s", job_id, self._scrub(str(err)))
            return None
        except Exception as err:
            LOG.debug("cannot tell how job %s is doing: %s", job_id, self._scrub(str(err)))
            return None
        if status.state == "failed":
            return JobOutcome("failed", f"Timeback's job {job_id} failed")
        if status.state == "completed":
            if status.return_value is not None and status.return_value.status == "error":
                return JobOutcome("failed", f"Timeback's job {job_id} completed with an error")
            return JobOutcome("completed")
        return JobOutcome("pending", status.state)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
