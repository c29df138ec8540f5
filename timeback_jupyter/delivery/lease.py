"""One drainer per store, across processes."""

from __future__ import annotations

import os

from .errors import DeliveryError


class Lease:
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
