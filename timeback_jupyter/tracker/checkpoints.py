"""Checkpoints of the open windows: what a kill -9 can lose is the time since the last one.

A window closes every ``heartbeat_interval`` (15 s); until then its time is only in the
clock's memory. Every ``checkpoint_interval`` (2 s), right after a tick, the tracker writes
each live run's open window so far into the store (:mod:`..store.open_windows`: one row for
this process, replaced in one small transaction). A process that finds the checkpoint of
another one that is gone records its windows as closed windows, each holding exactly the time
it held, with its TimeSpentEvent, and drops the checkpoint in the same transaction; a window
whose time is already recorded is skipped, so no second counts twice.

Gone means: on this host, its process no longer exists (a restart after a kill -9 recovers at
its first tick); anywhere, its checkpoint has not been rewritten for :data:`STALE_AFTER`
checkpoint intervals (a store shared across hosts; a live owner rewrites it every interval
while it has a window with time). A server ticks only while it has work (see
:meth:`Tracker.next_tick`): it looks once at start, then whenever it has a run not paused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator

from .. import caliper
from ..clock import EngagementClock
from ..model import Activity
from ..store import Store, StoreError

log = logging.getLogger("timeback_jupyter.tracker")

STALE_AFTER = 5  # checkpoint intervals without a rewrite before another host's rows are taken
CHECKPOINT_SLACK = 0.9  # a tick due a hair early still checkpoints (a timer may fire early)


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
        self._errors: dict[str, str] = {}  # what failed -> its last error (two keys at most)
        self.saved = 0  # checkpoints written, for the benchmarks
        self.recovered = 0  # windows recovered from processes gone
        self.recovered_seconds = 0.0

    def due(self, now: float) -> bool:
        return self._last is None or now - self._last >= self.interval * CHECKPOINT_SLACK

    def next_due(self, live: bool) -> float | None:
        """When the next checkpoint is due: at once before the first one (it recovers what a
        process gone left), then every ``interval`` while ``live`` (a run not paused: its
        window holds time) or while our rows in the store still need clearing; None when
        there is nothing to write."""
        if self._last is None:
            return float("-inf")
        if live or self._saved:
            return self._last + self.interval
        return None

    def step(self, now: float, actor: caliper.Actor) -> bool:
        """Right after the clock's tick to ``now``: recover what processes gone left, then
        write our runs' open windows, if ``interval`` has passed (True then). A failing store
        is logged once; the next tick tries again."""
        if not self.due(now):
            return False
        self._last = now
        # Each its own try: another's unreadable checkpoint must not stop ours.
        with self._said_once("recovering the open windows of a server gone"):
            self._recover(now, actor)
        with self._said_once("checkpoint of the open windows"):
            # Read as the tick just settled them: no integration here (see settled_windows).
            windows = self.clock.settled_windows()
            if windows or self._saved:
                self.store.save_open_windows(self.owner, windows, now)
                self._saved = bool(windows)
                self.saved += 1
        return True

    @contextlib.contextmanager
    def _said_once(self, what: str) -> Iterator[None]:
        """A failing store is logged once per distinct error (the windows' own writes report
        it too); the next checkpoint tries again."""
        try:
            yield
            self._errors.pop(what, None)
        except StoreError as err:
            if self._errors.get(what) != str(err):
                log.warning("timeback: %s failed: %s", what, err)
            self._errors[what] = str(err)

    def _recover(self, now: float, actor: caliper.Actor) -> None:
        stale_before = now - STALE_AFTER * self.interval
        for owner, saved_at, windows in self.store.open_windows(besides=self.owner):
            if not (owner_gone(owner) or saved_at < stale_before):
                continue
            items = []
            for window in windows:
                run = self.store.get_run(window.run_id)
                if run is None:
                    continue
                try:
                    target = self._target_of(run.activity)
                    event = caliper.time_spent_event(window, run.id, actor, target)
                except Exception as err:  # its course left the config: said once, dropped
                    log.warning("timeback: open window of run %s not recovered: %s", run.id, err)
                    continue
                items.append((window, event, target.sensor))
            recorded = self.store.recover_open_windows(owner, items)
            if recorded:
                total = sum(w.active + w.inactive for w in recorded)
                self.recovered += len(recorded)
                self.recovered_seconds += total
                log.warning(
                    "timeback: recovered %d open window(s) of a server that stopped without "
                    "closing them (%.1f s recorded up to its last checkpoint)",
                    len(recorded),
                    total,
                )
