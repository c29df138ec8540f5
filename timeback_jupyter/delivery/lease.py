"""One drainer per store, across processes."""

from __future__ import annotations

from ..store.owner import FileLock
from .errors import DeliveryError


class Lease:
    """An OS lock beside the store: one drainer per store, released even by kill -9.

    Two drainers would each take the other's inflight batch for a crashed one and send it
    again. The same :class:`FileLock` as the store's owner lock, on its own file: ``flush``
    drains beside a server that owns the store but is not draining right now.
    """

    def __init__(self, store_path: str) -> None:
        self._lock = FileLock(store_path + ".drainer.lock")
        self.path = self._lock.path

    def acquire(self) -> bool:
        try:
            return self._lock.acquire()
        except OSError as err:
            raise DeliveryError(
                f"{self.path}: cannot create the drainer lock ({err.strerror})"
            ) from None

    def release(self) -> None:
        self._lock.release()
