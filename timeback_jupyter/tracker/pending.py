"""Windows closed but not yet in the store, oldest first: written a batch per transaction, and
kept (bounded) while the store fails.

While the store fails (locked, disk full) the windows wait here and are written first once it
works again. To bound memory without losing a second, past :data:`PENDING_LIMIT` windows each
run's waiting windows are merged two by two, in order, until at most half the limit is left:
a merged window spans both, and holds the sum of their active and inactive time (a valid
window: its time fits in its span). Timeback gets fewer, longer TimeSpentEvents for that
stretch, and the same seconds. Each merge is logged with what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from .. import caliper
from ..model import Window
from ..store import Store

log = logging.getLogger("timeback_jupyter.tracker")

# Windows written per store transaction: one commit for a few windows instead of one each.
RECORD_BATCH = 50
# Windows kept in memory while the store fails before they are merged (an hour of 40 runs;
# a few megabytes).
PENDING_LIMIT = 10_000

Pending = tuple[Window, caliper.Target]


class PendingWindows:
    def __init__(self, limit: int = PENDING_LIMIT) -> None:
        self.limit = max(2, limit)
        self._items: list[Pending] = []
        self.merged = 0  # windows folded into others since the start, for status and tests
        self._unannounced = 0  # written since the drainer was last woken

    def __len__(self) -> int:
        return len(self._items)

    def windows(self) -> Iterator[Window]:
        """The windows waiting, oldest first (what the figures count as recorded)."""
        return (w for w, _ in self._items)

    def add(self, items: Iterable[Pending]) -> None:
        self._items.extend(items)
        if len(self._items) > self.limit:
            self._merge()

    def write(
        self,
        store: Store,
        actor: caliper.Actor,
        limit: int | None = None,
        notify: Callable[[], None] = lambda: None,
    ) -> int:
        """Write up to ``limit`` windows (all if None), oldest first, a batch per transaction
        with its events; how many were written. A batch the store refuses stays, whole.

        ``notify`` (the drainer's wake) is called once the queue is empty, not per call: the
        server writes a tick's windows in slices, and a wake per slice cost a drain (two
        commits) per slice. Also when the store fails, for what earlier calls wrote."""
        written = 0
        try:
            while self._items and (limit is None or written < limit):
                size = RECORD_BATCH if limit is None else min(RECORD_BATCH, limit - written)
                batch = self._items[:size]
                events = [
                    (w, caliper.time_spent_event(w, w.run_id, actor, target), target.sensor)
                    for w, target in batch
                ]
                store.record_windows(events)  # all or none: on failure kept for later
                del self._items[: len(batch)]
                written += len(batch)
                self._unannounced += len(batch)
        except Exception:
            self._announce(notify)
            raise
        if not self._items:
            self._announce(notify)
        return written

    def _announce(self, notify: Callable[[], None]) -> None:
        if self._unannounced:
            self._unannounced = 0
            notify()

    def _merge(self) -> None:
        before = len(self._items)
        while len(self._items) > self.limit // 2:
            by_run: dict[str, list[Pending]] = {}
            for item in self._items:
                by_run.setdefault(item[0].run_id, []).append(item)
            if all(len(items) < 2 for items in by_run.values()):
                break  # one window per run: as small as it gets (bounded by the live runs)
            merged: list[Pending] = []
            for items in by_run.values():
                for i in range(0, len(items) - 1, 2):
                    (a, target), (b, _) = items[i], items[i + 1]
                    merged.append(
                        (
                            Window(a.run_id, a.start, b.end, a.active + b.active,
                                   a.inactive + b.inactive),
                            target,
                        )
                    )  # fmt: skip
                if len(items) % 2:
                    merged.append(items[-1])
            merged.sort(key=lambda item: (item[0].end, item[0].start))
            self._items = merged
        self.merged += before - len(self._items)
        log.warning(
            "timeback: the store has not taken windows for a while: %d waiting windows merged "
            "into %d (each run's in pairs, in order; every second kept, fewer events sent)",
            before,
            len(self._items),
        )
