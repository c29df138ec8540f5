"""Outbox delivery: an asyncio drainer and the sinks it sends through.

The drainer takes the oldest pending events of the store's outbox, wraps each batch in one
Caliper envelope and hands it to a sink. A sink either accepts the envelope, raises
:class:`RetryableError` (network, timeout, 429, 5xx: try again later, same event ids) or
:class:`RejectedError` (the envelope will never be accepted: its events go to dead letters).

Delivery is at-least-once by construction and as close to exactly-once as the API allows:
a batch is marked inflight (committed) before it is sent and acked after. Whenever the outcome
of a send is unknown (a crash mid-send, a timeout, a connection dropped before the answer),
the batch stays inflight and, before anything else is sent, the sink is asked whether each of
those events was stored upstream: those that were are acked, the others are sent again with
the same ids. Timeback itself does not deduplicate, so that question is the only guard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from . import caliper
from .config import ENVIRONMENTS, Credentials, Timeback
from .store import OutboxItem, Store, StoreError

# The official SDK (timeback_caliper, timeback_common: pydantic and httpx) is imported where an
# envelope is checked or sent, not here: Jupyter loads this module at start, when nothing is
# sent yet, and the import costs more than the rest of the extension (see caliper.py).
if TYPE_CHECKING:
    from timeback_caliper import CaliperClient
    from timeback_common import TimebackProvider

LOG = logging.getLogger("timeback_jupyter.delivery")

# Answers where the request may have been processed before the failure reached us.
_AMBIGUOUS_STATUSES = {408, 502, 504}


class DeliveryError(Exception):
    """Delivery cannot run as configured (bad sink settings, another drainer on the store)."""


class DrainerBusy(DeliveryError):
    """Another process (a second Jupyter server on the same store) is delivering its events."""


class RetryableError(Exception):
    """The send failed for now: try the same events again later.

    ``retry_after`` is the server's Retry-After in seconds, when it gave one.
    ``maybe_delivered`` is true when the request may have been processed anyway (a timeout,
    a dropped connection), so the drainer asks the sink before sending again.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class RejectedError(Exception):
    """The envelope will never be accepted. ``event_ids`` names the culprits when known."""

    def __init__(self, reason: str, *, event_ids: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_ids = event_ids


@runtime_checkable
class Sink(Protocol):
    name: str

    async def send(self, envelope: dict[str, Any]) -> None: ...

    async def exists(self, event_id: str) -> bool | None: ...

    async def aclose(self) -> None: ...


def _check_envelope(envelope: Any) -> list[Any]:
    from timeback_caliper import CALIPER_DATA_VERSION

    if not isinstance(envelope, dict):
        raise RejectedError("envelope: must be a JSON object")
    if not isinstance(envelope.get("sensor"), str) or not envelope["sensor"].strip():
        raise RejectedError("envelope.sensor: required (a non-empty IRI)")
    if envelope.get("dataVersion") != CALIPER_DATA_VERSION:
        raise RejectedError(f"envelope.dataVersion: must be {CALIPER_DATA_VERSION}")
    if not isinstance(envelope.get("sendTime"), str) or not envelope["sendTime"]:
        raise RejectedError("envelope.sendTime: required (an ISO-8601 time)")
    data = envelope.get("data")
    if not isinstance(data, list) or not data:
        raise RejectedError("envelope.data: must be a non-empty list of events")
    return data


class LocalSink:
    """The embedded default: validates every event with the official models and accepts it.

    Nothing leaves the machine; the store keeps the accepted events (``jupyter timeback
    export``). Useful with no credentials, and as a dry run of what Timeback would receive.
    """

    name = "local"

    def __init__(self) -> None:
        self.accepted = 0

    async def send(self, envelope: dict[str, Any]) -> None:
        data = _check_envelope(envelope)
        problems: list[str] = []
        bad: list[str] = []
        for i, event in enumerate(data):
            try:
                caliper.validate_event(event)
            except caliper.CaliperInputError as err:
                event_id = event.get("id") if isinstance(event, dict) else None
                bad.append(event_id if isinstance(event_id, str) else f"#{i}")
                problems.append(f"event {event_id or i}: {err}")
        if problems:
            raise RejectedError("; ".join(problems), event_ids=bad)
        self.accepted += len(data)

    async def exists(self, event_id: str) -> bool | None:
        # Nothing is stored upstream; accepting an event again has no effect anywhere.
        return False

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return "LocalSink()"


class _AskedToWait(Exception):
    """Raised from inside the official transport instead of letting it sleep and retry."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__("asked to wait")
        self.seconds = seconds


@cache
def _single_shot_transport() -> type[Any]:
    """The official Caliper transport with its own retry loop cut short.

    ``BaseTransport.request`` retries 429/503 up to 3 times, sleeping in-process (and a 429 on
    its last try loses the Retry-After). There is no switch for that in timeback-common 0.4,
    so we hook the one place it consults before sleeping, ``_parse_retry_after``, and turn the
    first 429/503 into an exception carrying the server's delay. Our drainer does the backoff,
    durably, without holding a batch in memory for minutes.

    A class made on first use because its base class is the SDK's (imported lazily).
    """
    from timeback_caliper.lib.transport import Transport

    class SingleShotTransport(Transport):
        def _parse_retry_after(self, retry_after: str | None, attempt: int) -> float:
            seconds = super()._parse_retry_after(retry_after, attempt) if retry_after else None
            raise _AskedToWait(seconds)

    return SingleShotTransport


def caliper_provider(
    credentials: Credentials,
    *,
    environment: str,
    base_url: str | None = None,
    auth_url: str | None = None,
    timeout: float = 30.0,
) -> TimebackProvider:
    """The official provider of Timeback's Caliper URLs and OAuth tokens: ``environment``'s,
    or ``base_url``/``auth_url`` where given (a proxy, a stand-in). Imports the SDK."""
    from timeback_common import PLATFORM_ENDPOINTS, TimebackProvider

    endpoints = PLATFORM_ENDPOINTS["BEYOND_AI"]
    if base_url or auth_url:
        return TimebackProvider(
            base_url=(base_url or endpoints["caliper"][environment]).rstrip("/"),
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


class TimebackSink:
    """Sends envelopes to the Timeback Caliper API with the official ``CaliperClient``.

    ``environment`` picks Timeback's URLs; ``base_url``/``auth_url`` override them (a proxy,
    a stand-in). The client secret is never put in a message, a log record or a repr.
    The settings are checked here; the official client is built at the first send, since
    importing it is most of what the extension would cost Jupyter's start.
    """

    name = "timeback"

    def __init__(
        self,
        credentials: Credentials,
        *,
        environment: str = "staging",
        base_url: str | None = None,
        auth_url: str | None = None,
        timeout: float = 30.0,
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
        self._credentials = credentials
        self.environment = environment
        self._base_url, self._auth_url, self._timeout = base_url, auth_url, timeout
        self._client: CaliperClient | None = None
        self._endpoint = ""

    def _caliper(self) -> CaliperClient:
        """The official client, built once on first use (see the class docstring)."""
        if self._client is None:
            from timeback_caliper import CaliperClient

            provider = caliper_provider(
                self._credentials,
                environment=self.environment,
                base_url=self._base_url,
                auth_url=self._auth_url,
                timeout=self._timeout,
            )
            endpoint = provider.get_endpoint("caliper")
            transport = _single_shot_transport()(
                base_url=endpoint.base_url,
                token_manager=provider.get_token_manager("caliper"),
                paths=provider.get_paths("caliper"),
                timeout=provider.timeout,
            )
            self._endpoint = endpoint.base_url
            self._client = CaliperClient(transport=transport)
        return self._client

    @property
    def base_url(self) -> str:
        """The Caliper API's base URL, as the official client resolves it."""
        self._caliper()
        return self._endpoint

    @classmethod
    def from_config(cls, config: Timeback, credentials: Credentials | None) -> TimebackSink:
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
        )

    def __repr__(self) -> str:
        return f"TimebackSink({self.base_url!r}, client={self._credentials.masked!r})"

    def _scrub(self, text: str) -> str:
        """Remove the secret from text that came from elsewhere (a library, a server)."""
        secret = self._credentials.client_secret
        basic = base64.b64encode(f"{self._credentials.client_id}:{secret}".encode()).decode("ascii")
        for needle in (secret, basic):
            if needle:
                text = text.replace(needle, "***")
        return text

    async def send(self, envelope: dict[str, Any]) -> None:
        import pydantic
        from timeback_caliper import CaliperEnvelope

        _check_envelope(envelope)
        try:
            wrapped = CaliperEnvelope.model_validate(envelope)
        except pydantic.ValidationError as err:
            raise RejectedError(f"envelope: {err.errors()[0].get('msg', 'invalid')}") from None
        client = self._caliper()
        try:
            await client.events.send_envelope(wrapped)
        except Exception as err:
            raise self._classify(err) from None

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

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def make_sink(config: Timeback, credentials: Credentials | None) -> Sink:
    """The sink ``c.Timeback.sink`` names."""
    if config.sink == "timeback":
        return TimebackSink.from_config(config, credentials)
    return LocalSink()


@dataclass(frozen=True)
class DrainReport:
    """What one or more drain steps did."""

    sent: int = 0  # acknowledged by the sink (or found already stored upstream)
    retried: int = 0  # put back for a later attempt after a retryable failure
    rejected: int = 0  # moved to dead letters
    delay: float = 0.0  # seconds to wait before the next attempt (0: go on now)
    idle: bool = False  # the outbox had nothing to send
    error: str | None = None  # the last failure, if any
    remaining: int | None = None  # outbox depth afterwards (flush only)

    def __add__(self, other: DrainReport) -> DrainReport:
        return DrainReport(
            sent=self.sent + other.sent,
            retried=self.retried + other.retried,
            rejected=self.rejected + other.rejected,
            delay=other.delay,
            idle=other.idle,
            error=other.error or self.error,
            remaining=other.remaining,
        )


class _Lease:
    """An OS lock beside the store: one drainer per store, released even by kill -9.

    Two drainers would each take the other's inflight batch for a crashed one and send it
    again. ``flock`` is per open file and dies with the process, which is what we need.
    """

    def __init__(self, store_path: str) -> None:
        self.path = store_path + ".drainer.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one server per store is then on the admin
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise DeliveryError(
                f"{self.path}: cannot create the drainer lock ({err.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# Real time left to the event loop between two batches of a backlog. A batch holds the loop
# for milliseconds (claim, envelope, ack; all of it with the local sink); with sleep(0)
# between batches every turn a request needs (a kernel message takes several) would wait for
# one more batch: draining 50,000 local events made a cell's round trip 5x slower.
BATCH_PAUSE = 0.005


class Drainer:
    """Delivers the outbox through a sink, in order, with backoff, surviving crashes."""

    def __init__(
        self,
        store: Store,
        sink: Sink,
        *,
        batch_size: int = 50,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        idle_interval: float = 2.0,
        stop_timeout: float = 10.0,
        batch_pause: float = BATCH_PAUSE,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        log: logging.Logger = LOG,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DeliveryError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for name, value in (
            ("retry_initial", retry_initial),
            ("retry_max", retry_max),
            ("idle_interval", idle_interval),
            ("stop_timeout", stop_timeout),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise DeliveryError(f"{name} must be a positive number of seconds, got {value!r}")
        if retry_max < retry_initial:
            raise DeliveryError("retry_max must not be less than retry_initial")
        if not (isinstance(batch_pause, int | float) and 0 <= batch_pause < 1):
            raise DeliveryError(f"batch_pause must be in [0, 1) seconds, got {batch_pause!r}")
        self.batch_pause = float(batch_pause)
        self.store = store
        self.sink = sink
        self.batch_size = batch_size
        self.retry_initial = float(retry_initial)
        self.retry_max = float(retry_max)
        self.idle_interval = float(idle_interval)
        self.stop_timeout = float(stop_timeout)
        self._now = now
        self._sleep = sleep
        self._rng = rng
        self._wall = wall
        self._log = log
        self._lease = _Lease(store.path)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._last_error: str | None = None
        self._next_at: float | None = None
        self._recovered = False
        self._standby = False

    @classmethod
    def from_config(cls, store: Store, sink: Sink, config: Timeback, **kw: Any) -> Drainer:
        """A drainer with the ``c.Timeback`` knobs (batch_size, retry_*, drain_interval)."""
        return cls(
            store,
            sink,
            batch_size=config.batch_size,
            retry_initial=config.retry_initial,
            retry_max=config.retry_max,
            idle_interval=config.drain_interval,
            **kw,
        )

    # -- the steps -------------------------------------------------------------------------

    def _claim_lease(self) -> None:
        if not self._lease.acquire():
            self._standby = True
            raise DrainerBusy(
                f"another process is already delivering the events of {self.store.path}"
            )
        self._standby = False

    async def recover(self) -> None:
        """Settle the events a crash left inflight: acked if stored upstream, else re-queued.

        When another process owns the store's delivery, its inflight events are not ours to
        settle: this returns without touching them and :meth:`run` waits its turn.
        """
        async with self._lock:
            try:
                self._claim_lease()
            except DrainerBusy as err:
                self._log.info("%s; this one stands by", err)
                return
            await self._settle_inflight("interrupted mid-send (process stopped)")
            self._recovered = True

    async def _settle_inflight(self, why: str) -> int:
        """Ask the sink about every inflight event. Returns how many were already stored."""
        items = self.store.inflight()
        if not items:
            return 0
        landed: list[str] = []
        unknown: list[str] = []
        for i, item in enumerate(items):
            try:
                found = await self.sink.exists(item.event_id)
            except Exception as err:  # a sink bug must not wedge the queue
                self._log.warning("sink.exists failed for %s: %s", item.event_id, err)
                found = None
            if found is True:
                landed.append(item.event_id)
            elif found is None:
                # Cannot tell (API down?): don't spend a timeout on each of the rest.
                unknown.extend(x.event_id for x in items[i:])
                break
            else:
                unknown.append(item.event_id)
        if landed:
            self.store.ack(landed)
        if unknown:
            self.store.release(unknown, f"{why}; not found upstream, sending again")
        self._log.info(
            "settled %d inflight event(s): %d already stored upstream, %d to send again",
            len(items),
            len(landed),
            len(unknown),
        )
        return len(landed)

    def _backoff(self, retry_after: float | None) -> float:
        # A floor keeps an outage (or a Retry-After of 0) from becoming a tight loop.
        floor = self.retry_initial / 10.0
        if retry_after is not None and math.isfinite(retry_after):
            # The API answered and said when: its word, not the backoff an outage before it
            # grew (minutes after a long one), sets the wait.
            return max(float(retry_after), floor)
        # Full jitter (AWS architecture blog), capped.
        exponent = min(self._failures - 1, 60)
        cap = min(self.retry_max, self.retry_initial * 2.0**exponent)
        return max(cap * self._rng(), floor)

    async def drain_once(self) -> DrainReport:
        """Send one batch (one envelope) and settle it: ack, retry later, or dead-letter."""
        async with self._lock:
            self._claim_lease()
            settled = await self._settle_inflight("the last attempt's outcome was unknown")
            batch = self.store.claim_batch(self.batch_size)
            if not batch:
                return DrainReport(sent=settled, idle=True)
            report = await self._deliver(batch)
            return DrainReport(
                sent=report.sent + settled,
                retried=report.retried,
                rejected=report.rejected,
                delay=report.delay,
                error=report.error,
            )

    async def _deliver(self, batch: list[OutboxItem]) -> DrainReport:
        ids = [item.event_id for item in batch]
        try:
            envelope = caliper.envelope([i.payload for i in batch], batch[0].sensor, self._wall())
        except caliper.CaliperInputError as err:
            return self._reject(batch, RejectedError(f"cannot build the envelope: {err}"))
        try:
            await self.sink.send(envelope)
        except RejectedError as err:
            return self._reject(batch, err)
        except RetryableError as err:
            return self._retry(ids, str(err), err.retry_after, keep_inflight=err.maybe_delivered)
        except asyncio.CancelledError:
            # Stopped mid-send: the batch stays inflight and is settled on the next start.
            raise
        except Exception as err:
            self._log.exception("the %s sink failed unexpectedly", self.sink.name)
            return self._retry(ids, f"{type(err).__name__}: {err}", None, keep_inflight=True)
        self.store.ack(ids)
        if self._failures:
            self._log.info("delivery to %s works again", self.sink.name)
        self._failures = 0
        self._next_at = None
        self._last_error = None
        return DrainReport(sent=len(ids))

    def _retry(
        self, ids: list[str], error: str, retry_after: float | None, *, keep_inflight: bool
    ) -> DrainReport:
        # Maybe delivered: stay inflight, so the next step (or the next process, after a
        # crash) asks the sink before sending again. Otherwise back to pending, same seq.
        if not keep_inflight:
            self.store.release(ids, error)
        self._failures += 1
        delay = self._backoff(retry_after)
        self._next_at = self._now() + delay
        self._last_error = error
        self._log.warning(
            "sending %d event(s) to %s failed (%s); retry #%d in %.1fs",
            len(ids),
            self.sink.name,
            error,
            self._failures,
            delay,
        )
        return DrainReport(retried=len(ids), delay=delay, error=error)

    def _reject(self, batch: list[OutboxItem], err: RejectedError) -> DrainReport:
        ids = [item.event_id for item in batch]
        named = [i for i in (err.event_ids or []) if i in ids]
        culprits = named or ids
        self.store.dead_letter(culprits, err.reason)
        rest = [i for i in ids if i not in culprits]
        if rest:
            # Only some events were at fault; the others go again in the next envelope.
            self.store.release(rest, "sent again without a rejected neighbour")
        # The API answered: the connection works, whatever it thought of these events.
        self._failures = 0
        self._next_at = None
        self._last_error = err.reason
        self._log.error(
            "%s rejected %d event(s), moved to dead letters: %s",
            self.sink.name,
            len(culprits),
            err.reason,
        )
        return DrainReport(rejected=len(culprits), retried=len(rest), error=err.reason)

    # -- the loop --------------------------------------------------------------------------

    def notify(self) -> None:
        """Something was enqueued: wake the loop if it is idle."""
        self._wake.set()

    async def _wait(self, seconds: float, *, wake_on_notify: bool) -> None:
        waiters = [asyncio.ensure_future(self._sleep(seconds))]
        waiters.append(asyncio.ensure_future(self._stopping.wait()))
        if wake_on_notify:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def run(self) -> None:
        """Deliver until :meth:`stop`: drain while there is work, else wait for notify()."""
        if self._task is not None and not self._task.done():
            raise DeliveryError("this drainer is already running")
        self._task = asyncio.current_task()
        self._stopping.clear()
        while not self._stopping.is_set():
            # Cleared before draining: a notify() during the drain is not lost.
            self._wake.clear()
            try:
                if not self._recovered:
                    await self.recover()
                report = await self.drain_once()
            except DrainerBusy as err:
                # Not a failure: the owner delivers our events too (one outbox). Check back.
                self._last_error = str(err)
                await self._wait(
                    max(self.idle_interval, min(self.retry_max, 30.0)), wake_on_notify=False
                )
                continue
            except Exception as err:
                # A full disk, a locked store, another drainer, a bug: never let the loop die
                # (delivery would stop in silence); back off and try again.
                self._failures += 1
                delay = self._backoff(None)
                self._next_at = self._now() + delay
                self._last_error = str(err) or type(err).__name__
                if isinstance(err, StoreError | DeliveryError | OSError):
                    self._log.error("delivery paused for %.1fs: %s", delay, err)
                else:
                    self._log.exception("delivery failed unexpectedly; retrying in %.1fs", delay)
                await self._wait(delay, wake_on_notify=False)
                continue
            if self._stopping.is_set():
                break
            if report.delay > 0:
                await self._wait(report.delay, wake_on_notify=False)
            elif report.idle:
                await self._wait(self.idle_interval, wake_on_notify=True)
            else:
                await asyncio.sleep(self.batch_pause)  # see BATCH_PAUSE

    async def stop(self) -> None:
        """Let the batch in flight finish (at most ``stop_timeout``), then return."""
        self._stopping.set()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(task), self.stop_timeout)
            except TimeoutError:
                self._log.warning(
                    "delivery did not stop within %.0fs; its batch will be settled on the "
                    "next start",
                    self.stop_timeout,
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lease.release()

    async def flush(self, timeout: float) -> DrainReport:
        """Drain until the outbox is empty or ``timeout`` seconds pass.

        The timeout holds on the injected clock between steps and on the event loop's clock
        for a step that hangs: a send cut short stays inflight and is settled later.
        """
        deadline = self._now() + timeout
        total = DrainReport()
        try:
            async with asyncio.timeout(timeout):
                if not self._recovered:
                    await self.recover()
                while True:
                    step = await self.drain_once()
                    total = total + step
                    if step.idle:
                        break
                    remaining = deadline - self._now()
                    if remaining <= 0 or step.delay > remaining:
                        break
                    if step.delay > 0:
                        await self._sleep(step.delay)
                    else:
                        await asyncio.sleep(self.batch_pause)  # see BATCH_PAUSE
        except TimeoutError:
            self._log.warning("flush stopped after %.1fs with events still queued", timeout)
        return DrainReport(
            sent=total.sent,
            retried=total.retried,
            rejected=total.rejected,
            delay=total.delay,
            idle=total.idle,
            error=total.error,
            remaining=self.store.depth(),
        )

    def status(self) -> dict[str, Any]:
        """For the status bar, the REST status and the CLI. Holds no secret."""
        try:
            stats = self.store.stats()
        except StoreError as err:
            stats = {"error": str(err)}
        if self._standby:
            state = "standby"
        elif self._failures:
            state = "retrying"
        elif stats.get("dead"):
            state = "rejected-some"
        else:
            state = "ok"
        next_in = None
        if self._failures and self._next_at is not None:
            next_in = max(0.0, self._next_at - self._now())
        return {
            "state": state,
            "sink": self.sink.name,
            "consecutive_failures": self._failures,
            "last_error": self._last_error,
            "next_attempt_in": next_in,
            "pending": stats.get("pending"),
            "inflight": stats.get("inflight"),
            "dead_letters": stats.get("dead"),
        }
