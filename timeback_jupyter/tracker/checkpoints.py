"""Checkpoints of the open windows: what a kill -9 can lose is the time since the last one.

A window closes every ``heartbeat_interval`` (15 s); until then its time is only in the
clock's memory. Every ``checkpoint_interval`` (2 s) the tracker writes each live run's open
window so far into the store (``open_windows``: one small transaction, replacing this
process's rows). A process that finds checkpoints of another one that is gone records each as
a closed window holding exactly the time it held, with its TimeSpentEvent, and drops the
checkpoint in the same transaction.

Gone means: on this host, its process no longer exists (a restart after a kill -9 recovers at
its first tick); anywhere, its checkpoints have not been rewritten for :data:`STALE_AFTER`
checkpoint intervals (a store shared across hosts; a live owner rewrites them every
interval). A window both recorded and checkpointed counts once: recording a window deletes its
checkpoint, and a checkpoint of a window already recorded is ignored (same run and start).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable

from .. import caliper
from ..clock import EngagementClock
from ..model import Activity
from ..store import Store, StoreError

log = logging.getLogger("timeback_jupyter.tracker")

STALE_AFTER = 5  # checkpoint intervals without a rewrite before another host's rows are taken
CHECKPOINT_SLACK = 0.9  # a tick due a hair early still checkpoints (ticks come every second)


def owner_tag() -> str:
    """This process among the store's writers: host, pid and a token (pids are reused)."""
    return f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex[:12]}"


def owner_gone(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer exists."""
    host, _, rest = owner.partition(" ")
    pid_text = rest.partition(" ")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another tracker of this process (tests): only staleness counts
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


class Checkpoints:
    def __init__(
        self,
        store: Store,
        clock: EngagementClock,
        interval: float,
        *,
        target_of: Callable[[Activity], caliper.Target],
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self.owner = owner or owner_tag()
        self._target_of = target_of
        self._last: float | None = None
        self._saved = False  # our rows may be in the store (an empty save is then needed)
        self._last_error = ""
        self._warned: set[tuple[str, float]] = set()  # checkpoints we could not recover
        self.saved = 0  # checkpoints written, for the benchmarks
        self.recovered = 0  # windows recovered from processes gone
        self.recovered_seconds = 0.0

    def due(self, now: float) -> bool:
        return self._last is None or now - self._last >= self.interval * CHECKPOINT_SLACK

    def step(self, now: float, live: Iterable[str], actor: caliper.Actor) -> None:
        """At a tick: recover what processes gone left, then write our runs' open windows, if
        ``interval`` has passed. A failing store is logged once; the next tick tries again."""
        if not self.due(now):
            return
        self._last = now
        try:
            self._recover(now, actor)
            windows = [w for w in (self.clock.open_window(r, now) for r in live) if w is not None]
            if windows or self._saved:
                self.store.save_open_windows(self.owner, windows)
                self._saved = bool(windows)
                self.saved += 1
            self._last_error = ""
        except StoreError as err:  # the windows' own writes report the store's failure
            if str(err) != self._last_error:
                log.warning("timeback: checkpoint of the open windows failed: %s", err)
            self._last_error = str(err)

    def _recover(self, now: float, actor: caliper.Actor) -> None:
        stale_before = now - STALE_AFTER * self.interval
        items = []
        for window, owner in self.store.open_windows(besides=self.owner):
            if not (owner_gone(owner) or window.end < stale_before):
                continue
            run = self.store.get_run(window.run_id)
            if run is None:
                continue
            try:
                target = self._target_of(run.activity)
                event = caliper.time_spent_event(window, run.id, actor, target)
            except Exception as err:  # its course left the config: kept, said once
                if (run.id, window.start) not in self._warned:
                    if len(self._warned) > 1000:
                        self._warned.clear()
                    self._warned.add((run.id, window.start))
                    log.warning("timeback: open window of run %s not recovered: %s", run.id, err)
                continue
            items.append((window, event, target.sensor))
        if items:
            self.store.record_windows(items)
            total = sum(w.active + w.inactive for w, _, _ in items)
            self.recovered += len(items)
            self.recovered_seconds += total
            log.warning(
                "timeback: recovered %d open window(s) of a server that stopped without "
                "closing them (%.1f s recorded up to their last checkpoint)",
                len(items),
                total,
            )
