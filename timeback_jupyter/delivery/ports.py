"""What the drainer needs of an outbox: the port both outboxes implement.

The SQLite store of a student's server (``store.Store``) and the hub relay's outbox
(``relay.outbox.RelayOutbox``) are delivered by the same :class:`~.drainer.Drainer`; this is
all it asks of them. Every method commits before it returns (a claim marks the batch inflight
first, so a crash finds it again) and raises ``store.StoreError`` when the storage fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from ..store import OutboxItem


@runtime_checkable
class OutboxPort(Protocol):
    # The drainer's lease (one drainer per outbox across processes) is a lock file beside it.
    path: str

    def claim_batch(self, limit: int) -> list[OutboxItem]:
        """The oldest pending events sharing the first one's sensor, marked inflight."""
        ...

    def inflight(self) -> list[OutboxItem]: ...

    def ack(self, event_ids: Iterable[str]) -> None: ...

    def release(self, event_ids: Iterable[str], error: str) -> None:
        """Back to pending, keeping their order."""
        ...

    def dead_letter(self, event_ids: Iterable[str], reason: str) -> None: ...

    def depth(self) -> int:
        """Pending and inflight events."""
        ...

    def stats(self) -> dict[str, Any]:
        """At least ``pending``, ``inflight`` and ``dead`` counts."""
        ...
