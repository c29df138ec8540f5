"""What the stand-in saw: every request, and the events its jobs stored, queryable by id.

:class:`Recording` is thread-safe: the server's handler threads write it while a test reads it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    at: float  # time.monotonic() when it arrived
    client_id: str | None = None  # for token requests
    body: Any = None  # the parsed JSON of an event POST, also when a fault answered it

    @property
    def event_ids(self) -> list[str]:
        data = self.body.get("data") if isinstance(self.body, dict) else None
        return [e.get("id") for e in data if isinstance(e, dict)] if isinstance(data, list) else []


class Recording:
    """The requests in arrival order, the accepted envelopes and events, and each event by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._envelopes: list[dict[str, Any]] = []
        self._received: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._envelopes)

    @property
    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def note(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def accept(self, envelope: dict[str, Any], count: int | None = None) -> None:
        """Store a processed envelope's events (its first ``count`` only, if given: a job
        that failed part way); an id seen before keeps its first copy."""
        with self._lock:
            self._envelopes.append(envelope)
            for event in envelope["data"][:count]:
                self._received.append(event)
                self._by_id.setdefault(
                    event["id"],
                    {
                        "event": event,
                        "sensor": envelope["sensor"],
                        "sendTime": envelope["sendTime"],
                        "n": len(self._by_id) + 1,
                    },
                )

    def stored(self, event_id: str) -> dict[str, Any] | None:
        """The event as ``GET /caliper/events/{id}`` answers it, or None if never accepted."""
        with self._lock:
            entry = self._by_id.get(event_id)
        if entry is None:
            return None
        event = entry["event"]
        # The shape of the real API's StoredEvent (timeback_caliper.types.api).
        return {
            "id": entry["n"],
            "externalId": event["id"],
            "sensor": entry["sensor"],
            "type": event["type"],
            "profile": event.get("profile"),
            "action": event["action"],
            "eventTime": event["eventTime"],
            "sendTime": entry["sendTime"],
            "created_at": entry["sendTime"],
            "actor": event.get("actor"),
            "object": event.get("object"),
            "generated": event.get("generated"),
            "session": event.get("session"),
            "extensions": event.get("extensions"),
        }
