"""One drainer per store, across processes."""

from __future__ import annotations

from ..store.owner import FileLock
from .errors import DeliveryError


class Lease:
    """An OS lock beside the store: one drainer per store, released even by kill -9.

    Two drainers would each take the other's inflight batch for a crashed one and send it
    again. The same :class:`FileLock` as the store's owner lock, on its own file: ``flush``
    drains beside a server that owns the store but is not draining right now.

    An empty ``store_path`` is a store whose claimers keep out of each other's way in the
    database itself (the relay on PostgreSQL: several replicas, ``SKIP LOCKED``): no lease.
    """

    def __init__(self, store_path: str) -> None:
        self._lock = FileLock(store_path + ".drainer.lock") if store_path else None
        self.path = self._lock.path if self._lock is not None else ""

    def acquire(self) -> bool:
        if self._lock is None:
            return True
        try:
            return self._lock.acquire()
        except OSError as err:
            raise DeliveryError(
                f"{self.path}: cannot create the drainer lock ({err.strerror})"
            ) from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
