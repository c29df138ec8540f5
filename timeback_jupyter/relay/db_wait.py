"""A starting relay waits for its database instead of exiting.

On Kubernetes the relay's pods and PostgreSQL's often start together, and after a node's
restart the database may come up last. A relay that exits at once is restarted by the kubelet
with a back-off that grows to five minutes, so a database back in ten seconds could leave the
relay down for minutes. Only "cannot be reached now" is waited for: a store made by a newer
relay, a wrong URL or a refused login are configuration errors and fail at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .database import RelayDatabase, RelayDatabaseUnavailable

LOG = logging.getLogger("timeback_jupyter.relay")

FIRST_DELAY = 0.5  # seconds before the second try; doubled each time up to MAX_DELAY
MAX_DELAY = 10.0


def open_when_reachable(
    open_db: Callable[[], RelayDatabase],
    wait_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RelayDatabase:
    """``open_db()``, tried again while the database cannot be reached, for ``wait_seconds``
    at most (``c.Relay.db_wait_seconds``; 0: once). Each wait is logged with the reason (the
    URL's password is never in it: :func:`.database.open_relay_db` hides it)."""
    deadline = clock() + wait_seconds
    delay = FIRST_DELAY
    tries = 0
    while True:
        tries += 1
        try:
            return open_db()
        except RelayDatabaseUnavailable as err:
            left = deadline - clock()
            if left <= 0:
                if wait_seconds <= 0:
                    raise
                raise RelayDatabaseUnavailable(
                    f"{err} (tried {tries} times over {wait_seconds:g} s: c.Relay.db_wait_seconds)"
                ) from None
            pause = min(delay, left)
            LOG.warning("%s; trying again in %.1f s (for %.0f s more)", err, pause, left)
            sleep(pause)
            delay = min(delay * 2, MAX_DELAY)
