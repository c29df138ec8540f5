"""Settling a send whose outcome is unknown: the only guard against duplicates upstream."""

from __future__ import annotations

import logging

from .ports import OutboxPort
from .sink import Sink


async def settle_inflight(store: OutboxPort, sink: Sink, why: str, log: logging.Logger) -> int:
    """Ask the sink about every inflight event: acked if stored upstream, else sent again.

    Returns how many were already stored. ``why`` says, in the store, why events went back.
    """
    items = store.inflight()
    if not items:
        return 0
    landed: list[str] = []
    unknown: list[str] = []
    for i, item in enumerate(items):
        try:
            found = await sink.exists(item.event_id)
        except Exception as err:  # a sink bug must not wedge the queue
            log.warning("sink.exists failed for %s: %s", item.event_id, err)
            found = None
        if found is True:
            landed.append(item.event_id)
        elif found is None:
            # Cannot tell (API down?): don't spend a timeout on each of the rest.
            unknown.extend(x.event_id for x in items[i:])
            break
        else:
            unknown.append(item.event_id)
    if landed:
        store.ack(landed)
    if unknown:
        store.release(unknown, f"{why}; not found upstream, sending again")
    log.info(
        "settled %d inflight event(s): %d already stored upstream, %d to send again",
        len(items),
        len(landed),
        len(unknown),
    )
    return len(landed)
