"""What delivery raises: its own misconfiguration, and a sink's two verdicts on an envelope."""

from __future__ import annotations


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
