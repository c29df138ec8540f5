"""Outbox delivery: an asyncio drainer and the sinks it sends through.

The drainer (:mod:`.drainer`) takes the oldest pending events of the store's outbox, wraps
each batch in one Caliper envelope and hands it to a sink. A sink either accepts the envelope,
raises :class:`RetryableError` (network, timeout, 429, 5xx: try again later, same event ids) or
:class:`RejectedError` (the envelope will never be accepted: its events go to dead letters).

Delivery is at-least-once by construction and as close to exactly-once as the API allows:
a batch is marked inflight (committed) before it is sent and acked after. Whenever the outcome
of a send is unknown (a crash mid-send, a timeout, a connection dropped before the answer),
the batch stays inflight and, before anything else is sent, the sink is asked whether each of
those events was stored upstream: those that were are acked, the others are sent again with
the same ids. Timeback itself does not deduplicate, so that question is the only guard.

``Sink`` is what a sink provides (:mod:`.sink`); :class:`LocalSink` keeps events on this
machine, :class:`TimebackSink` sends them with the official SDK; :func:`make_sink` picks the
one ``c.Timeback.sink`` names. Everything importable from ``timeback_jupyter.delivery`` before
it became a package still is.
"""

from ..connection import caliper_provider  # where it was before it moved
from .drainer import BATCH_PAUSE, LOG, Drainer
from .errors import DeliveryError, DrainerBusy, RejectedError, RetryableError
from .local import LocalSink
from .make import make_sink
from .ports import OutboxPort
from .report import DrainReport
from .sink import Sink, check_envelope
from .timeback import TimebackSink

__all__ = [
    "BATCH_PAUSE",
    "LOG",
    "DeliveryError",
    "DrainReport",
    "Drainer",
    "DrainerBusy",
    "LocalSink",
    "OutboxPort",
    "RejectedError",
    "RetryableError",
    "Sink",
    "TimebackSink",
    "caliper_provider",
    "check_envelope",
    "make_sink",
]
