"""A batch delivered as stored: read, checked and acknowledged in one call on the store thread.

For a sink that only checks what it accepts, with no effect outside the store (the local sink,
``accept_stored``), a drain step needs no event parsed: the outbox keeps each event's JSON
text and whether our builder made it (``outbox.checked``), and the builder already checked
those. The batch is read (not claimed: after a crash it is simply checked again), enveloped as
text, checked, and acknowledged (or, refused, set aside) in one handoff to the drainer's store
thread, so the event loop holds none of it and pays one wake-up per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import caliper
from .errors import RejectedError
from .writes import set_aside

LOG = logging.getLogger("timeback_jupyter.delivery")


@dataclass(frozen=True)
class StoredStep:
    event_ids: list[str]
    rejected: RejectedError | None = None  # the batch was refused: nothing acked...
    culprits: tuple[str, ...] = ()  # ...these dead-lettered...
    rest: tuple[str, ...] = ()  # ...and these pending again (:func:`.writes.set_aside`)
    failed: str | None = None  # the sink failed unexpectedly: nothing acked, try again later


def takes_stored(sink: Any, store: Any) -> bool:
    """Whether the drainer delivers this sink's batches as stored. The promise is the sink's
    own class's (as for ``remote``): a subclass with another ``send`` is sent dicts."""
    own = vars(type(sink))
    return (
        own.get("remote", True) is False
        and callable(own.get("accept_stored"))
        and callable(getattr(store, "stored_batch", None))
    )


def posts_stored(sink: Any, store: Any) -> bool:
    """Whether the drainer claims this sink's batches as stored (the payloads' JSON texts,
    ``claim_stored``) and has the sink post them as they are (``send_stored``: the Timeback
    sink, through the official transport): the relay's outbox, whose events the relay built.
    The promise is the sink's own class's, as above: a subclass with another ``send`` is sent
    dicts."""
    return callable(vars(type(sink)).get("send_stored")) and callable(
        getattr(store, "claim_stored", None)
    )


def deliver_stored(store: Any, sink: Any, limit: int, wall: Callable[[], float]) -> StoredStep:
    """On the store thread: the next batch, checked by ``sink`` and acknowledged, or set
    aside if refused; an empty step when nothing is pending. The store's errors propagate
    (nothing acked)."""
    batch = store.stored_batch(limit)
    if batch is None:
        return StoredStep([])
    try:
        envelope = caliper.stored_envelope(batch.texts, batch.sensor, wall(), batch.unchecked)
    except caliper.CaliperInputError as err:
        return _refused(store, batch.event_ids, RejectedError(f"cannot build the envelope: {err}"))
    try:
        sink.accept_stored(envelope)
    except RejectedError as err:
        return _refused(store, batch.event_ids, err)
    except Exception as err:  # a sink bug: the batch stays pending, as read
        LOG.exception("the %s sink failed unexpectedly", getattr(sink, "name", "?"))
        return StoredStep(batch.event_ids, failed=f"{type(err).__name__}: {err}")
    store.ack(batch.event_ids)  # delivered when accepted: the local sink has no jobs
    return StoredStep(batch.event_ids)


def _refused(store: Any, event_ids: list[str], err: RejectedError) -> StoredStep:
    culprits, rest = set_aside(store, event_ids, err)
    return StoredStep(event_ids, err, tuple(culprits), tuple(rest))
