"""The relay sink: a student's server on JupyterHub sends its outbox to the school's relay.

On a hub the single-user server holds no Timeback credential: it posts each envelope to the
relay service (``$TIMEBACK_RELAY_URL`` + ``api/events``) with the server's own
``$JUPYTERHUB_API_TOKEN``; the relay asks the hub who that is, stamps the actor and forwards
to Timeback. The server's outbox stays the buffer: whatever the relay does not acknowledge
stays queued (a stopped relay loses nothing).

How answers map onto the drainer's verdicts: 5xx, a refused connection or a page that is not
the relay's JSON (the hub's "service not running", no relay behind the URL) -> retry; a
timeout or a dropped connection -> retry after asking
``api/events/<id>`` whether it arrived; 401/403 -> retry with the relay's message (a hub
restart brings a new token; a missing scope is the admin's to fix and shows on the status);
400 -> rejected. Events the relay refuses inside a 200 (a conflict, an activity not in the
school's catalog) are its verdict on them, final: logged and kept visible in :meth:`describe`.

The relay's 200 may carry ``send_every`` (``c.Relay.send_every``): the pace the drainer then
keeps between sends of heartbeats (:mod:`.pace`); kept as ``pace``, 0 when the relay says none.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..config.common import RELAY_URL_ENV
from .errors import DeliveryError, RejectedError, RetryableError
from .pace import pace_from
from .sink import check_envelope

LOG = logging.getLogger("timeback_jupyter.delivery")

__all__ = ["RELAY_URL_ENV", "RelaySink"]


HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
# Refusals kept for the status (the newest last); their count is kept in full.
KEPT_REFUSALS = 20
# Seconds between checks of the relay by watch(): often enough that a fixed scope or a relay
# back up clears the status within a minute, rarely enough to cost the relay nothing.
CHECK_INTERVAL = 30.0


def relay_base(url: str) -> str:
    """``url`` as the relay's base (``.../services/timeback-relay/``); DeliveryError if it is
    not an http(s) URL."""
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeliveryError(
            f"${RELAY_URL_ENV} must be the relay's http(s) URL, e.g. "
            f"http://127.0.0.1:8000/services/timeback-relay/, got {text!r}"
        )
    return text if text.endswith("/") else text + "/"


def _message(response: httpx.Response) -> str:
    """The relay's (or the hub proxy's) words for a failed answer, one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    else:
        text = response.text.strip()[:300] or response.reason_phrase
    return " ".join(text.split())


def _from_relay(response: httpx.Response) -> bool:
    """The relay answers JSON objects, always; the hub's and proxies' pages are HTML."""
    if "json" not in response.headers.get("Content-Type", ""):
        return False
    try:
        return isinstance(response.json(), dict)
    except ValueError:
        return False


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RelaySink:
    """Sends envelopes to the hub's relay service with the server's hub token.

    ``problem`` is what is wrong with the relay now (unreachable, no relay at the URL, the
    token refused or lacking the scope), None when its last answer was fine; ``watch`` keeps
    it fresh while nothing is sent. The token never appears in a message, log or repr.
    """

    name = "relay"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Any = time.time,
    ) -> None:
        self.url = relay_base(url)
        if not token:
            raise DeliveryError(
                f"the relay sink needs the server's ${HUB_TOKEN_ENV} (set by JupyterHub for "
                "every single-user server): this server was not started by a hub"
            )
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise DeliveryError(f"request timeout must be a positive number, got {timeout!r}")
        self._token = token
        self._timeout = float(timeout)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._now = now
        self.problem: str | None = None
        self.checked_at: float | None = None
        self.refused = 0
        self.refusals: deque[dict[str, Any]] = deque(maxlen=KEPT_REFUSALS)
        # accepted with a word from the relay (0 XP: not in the school's catalog, time cut)
        self.notes: deque[dict[str, Any]] = deque(maxlen=KEPT_REFUSALS)
        self.cut_seconds = 0.0
        self.pace = 0.0  # seconds between sends the relay asked for in its last 200 (.pace)
        self._bad_paces: set[str] = set()  # unusable ones logged already

    @classmethod
    def from_environ(cls, environ: Any, *, timeout: float = 30.0) -> RelaySink:
        return cls(environ.get(RELAY_URL_ENV, ""), environ.get(HUB_TOKEN_ENV, ""), timeout=timeout)

    def __repr__(self) -> str:
        return f"RelaySink({self.url!r})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url,
                headers={"Authorization": f"token {self._token}"},
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
            )
        return self._client

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _failed(self, problem: str) -> str:
        self.problem = self._scrub(problem)
        self.checked_at = self._now()
        return self.problem

    def _fine(self) -> None:
        self.problem = None
        self.checked_at = self._now()

    # -- the Sink protocol -----------------------------------------------------------------

    async def send(self, envelope: dict[str, Any]) -> None:
        check_envelope(envelope)
        try:
            response = await self._http().post("api/events", json=envelope)
        except httpx.TimeoutException:
            raise RetryableError(
                self._failed(f"the relay at {self.url} did not answer in time"),
                maybe_delivered=True,
            ) from None
        except httpx.ConnectError as err:
            raise RetryableError(
                self._failed(f"cannot reach the relay at {self.url}: {err}")
            ) from None
        except httpx.TransportError as err:
            # The request went out; the answer did not come back.
            raise RetryableError(
                self._failed(f"connection to the relay lost: {type(err).__name__}: {err}"),
                maybe_delivered=True,
            ) from None
        self._verdict(response)
        self._fine()
        self.pace = pace_from(response.json(), self._bad_paces)
        self._note_refusals(response)

    def _verdict(self, response: httpx.Response) -> None:
        """Raise what the drainer must hear for an answer that is not the relay's 200."""
        status = response.status_code
        if not _from_relay(response):
            # A page of the hub (the relay is down: 503; no such service: 403/404) or of a
            # proxy in between: nothing reached a relay.
            raise RetryableError(
                self._failed(
                    f"no relay answers at {self.url} (HTTP {status} from the hub or a proxy); "
                    f"check ${RELAY_URL_ENV} and the hub's c.JupyterHub.services"
                )
            )
        if status == 200:
            return
        text = self._scrub(_message(response))
        if status == 400:
            raise RejectedError(f"the relay refused the envelope: {text}")
        if status in (401, 403):
            raise RetryableError(self._failed(f"the relay refused this server ({status}): {text}"))
        if status in (408, 502, 504):
            raise RetryableError(
                self._failed(f"the relay did not answer in time ({status}): {text}"),
                maybe_delivered=True,
            )
        if status == 429 or status >= 500:
            raise RetryableError(
                self._failed(f"the relay failed ({status}): {text}"),
                retry_after=_retry_after(response),
            )
        raise RejectedError(f"the relay refused the envelope ({status}): {text}")

    def _note_refusals(self, response: httpx.Response) -> None:
        """Events the relay refused inside its 200: its final word; logged, kept visible."""
        events = response.json().get("events")
        for event in events if isinstance(events, list) else ():
            if not isinstance(event, dict):
                continue
            cut = event.get("cut_seconds")
            if isinstance(cut, int | float) and cut > 0:
                self.cut_seconds += float(cut)
            said = {"id": event.get("id"), "reason": event.get("reason")}
            if event.get("status") == "refused":
                self.refused += 1
                self.refusals.append(said)
                LOG.warning("the relay refused event %s: %s", said["id"], said["reason"])
            elif said["reason"]:
                if "xp" in event:
                    said["xp"] = event["xp"]
                self.notes.append(said)
                LOG.info("the relay on event %s: %s", said["id"], said["reason"])

    async def exists(self, event_id: str) -> bool | None:
        try:
            response = await self._http().get(f"api/events/{quote(event_id, safe='')}")
        except httpx.HTTPError as err:
            LOG.debug("cannot tell whether %s reached the relay: %s", event_id, err)
            return None
        if not _from_relay(response):
            return None  # a page of the hub or a proxy: the relay was not asked
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            # The relay's own 404 names the event; a page of the hub (no relay) does not.
            return False if "id" in response.json() else None
        return None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- health, for the status ------------------------------------------------------------

    async def check(self) -> str | None:
        """Ask the relay whether it is there and takes this server's token (``api/me``):
        the problem, None if all is well. A missing scope shows here before any event."""
        try:
            response = await self._http().get("api/me")
        except httpx.HTTPError as err:
            return self._failed(f"cannot reach the relay at {self.url}: {type(err).__name__}")
        try:
            self._verdict(response)
        except (RetryableError, RejectedError) as err:
            return self._failed(str(err))
        self._fine()
        return None

    async def watch(self, interval: float = CHECK_INTERVAL) -> None:
        """Keep ``problem`` fresh until cancelled (a task of the server)."""
        while True:
            try:
                await self.check()
            except Exception as err:  # never let the watch die in silence
                self._failed(f"checking the relay failed: {type(err).__name__}: {err}")
            await asyncio.sleep(interval)

    def describe(self) -> dict[str, Any]:
        """The relay as the status shows it: where, what is wrong, what it refused."""
        return {
            "url": self.url,
            "problem": self.problem,
            "checked_at": self.checked_at,
            "refused": self.refused,
            "refusals": list(self.refusals),
            "notes": list(self.notes),
            "cut_seconds": self.cut_seconds,
            "send_every": self.pace,
        }
