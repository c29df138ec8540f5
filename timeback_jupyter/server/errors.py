"""The service's refusals, each with the HTTP status a handler answers it with."""

from __future__ import annotations


class ServiceError(Exception):
    """A request refused; ``status`` is the HTTP status to answer it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotebookError(ServiceError):
    """A notebook that cannot be read, or whose ``metadata.timeback`` is not usable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


class StoreFailure(ServiceError):
    """The store failed (locked, full, gone): nothing was recorded, a later try may work."""

    def __init__(self, err: BaseException) -> None:
        super().__init__(f"the timeback store failed: {err}", 503)
        self.error = err
