"""Checkpoints of the open windows: each writing process's live runs' windows so far.

A window closes every heartbeat (15 s) and only then reaches ``windows``; until then its time
is in the clock's memory. The tracker writes it here every ``checkpoint_interval`` (2 s): one
row per writing process (``owner``), its windows packed (run ids, and their times as
doubles), replaced whole in one small transaction. One row, not a row per run: hundreds of
live runs every couple of seconds cost one write of a few pages instead of hundreds of index
updates (``python -m benchmarks openwindows``: under a millisecond of CPU for 500 runs).

A process that finds the row of one that is gone records its windows as closed windows, each
with exactly the time it held, and deletes the row, in one transaction. A checkpointed window
whose time is already in ``windows`` (it closed and was recorded before the process went, or
was recorded merged with others) is skipped: it overlaps a recorded window of its run. So no
second counts twice, and nothing is added to the heartbeat path.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from ..model import InvalidInput, Window, require_text
from .database import Database
from .errors import StoreError
from .runs import check_windows, insert_window

Row = tuple[str, float, float, float, float]  # run_id, start, end, active, inactive
SEPARATOR = ","  # between the run ids of a checkpoint (UUIDs: never in one)


class OpenWindowStore(Database):
    def save_open_windows(self, owner: str, windows: Sequence[Row], at: float) -> None:
        """Replace ``owner``'s checkpoint with ``windows``, each run's open window so far as
        ``(run_id, start, end, active, inactive)`` (none: the row goes), saved at ``at``.

        Rows, not :class:`Window` s, and packed (the run ids joined, the times as an array of
        doubles: exact, and a tenth of the CPU of JSON's float formatting): they come straight
        from the clock, hundreds every couple of seconds. They are checked whole when read
        back (:meth:`open_windows`)."""
        owner = require_text(owner, "owner", 200)
        try:
            ids = [row[0] for row in windows]
            times = array("d", [x for row in windows for x in row[1:]])
        except (TypeError, IndexError) as err:
            raise InvalidInput(
                "windows", f"must be rows of a run id and 4 numbers ({err})"
            ) from None
        joined = SEPARATOR.join(ids)
        if (
            len(times) != 4 * len(ids)
            or not all(isinstance(i, str) for i in ids)
            or joined.count(SEPARATOR) != max(len(ids) - 1, 0)
            or not math.isfinite(math.fsum(times))  # a NaN or infinity anywhere shows here
        ):
            raise InvalidInput("windows", "must be rows of a run id and 4 finite numbers")
        if sys.byteorder == "big":
            times.byteswap()  # kept little-endian: a store may move between machines
        with self._write() as db:
            if not windows:
                db.execute("DELETE FROM open_windows WHERE owner = ?", (owner,))
                return
            db.execute(
                "INSERT OR REPLACE INTO open_windows (owner, saved_at, runs, times) "
                "VALUES (?, ?, ?, ?)",
                (owner, float(at), joined, times.tobytes()),
            )

    def open_windows(self, *, besides: str | None = None) -> list[tuple[str, float, list[Window]]]:
        """Every checkpoint as ``(owner, saved_at, windows)``; ``besides``: not that owner's.
        A row that does not read as windows is reported, not skipped: StoreError."""
        sql = "SELECT owner, saved_at, runs, times FROM open_windows"
        rows = (
            self._read(sql + " ORDER BY saved_at")
            if besides is None
            else self._read(sql + " WHERE owner != ? ORDER BY saved_at", (besides,))
        )
        out = []
        for owner, saved_at, runs, blob in rows:
            try:
                times = array("d")
                times.frombytes(blob)
                if sys.byteorder == "big":
                    times.byteswap()
                ids = runs.split(SEPARATOR)
                if len(times) != 4 * len(ids):
                    raise ValueError(f"{len(ids)} runs, {len(times)} times")
                windows = [Window(run, *times[4 * i : 4 * i + 4]) for i, run in enumerate(ids)]
            except (TypeError, ValueError) as err:  # InvalidInput is a ValueError
                raise StoreError(
                    f"{self.path}: the checkpoint of {owner!r} is unreadable ({err})"
                ) from None
            out.append((owner, saved_at, windows))
        return out

    def recover_open_windows(
        self, owner: str, items: Sequence[tuple[Window, dict[str, Any], str]]
    ) -> list[Window]:
        """Record the checkpointed windows of ``owner`` (gone) with their events and delete
        its checkpoint, in one transaction; the windows recorded (those whose time was not
        already in a recorded window of their run)."""
        owner = require_text(owner, "owner", 200)
        checked = check_windows(items)
        recorded = []
        with self._write() as db:
            for window, event, event_id, sensor in checked:
                # A run's windows never overlap: only the last one begun before this one's end
                # can hold any of its time (found by the primary key, not a scan).
                last = db.execute(
                    'SELECT "end" FROM windows WHERE run_id = ? AND start < ? '
                    "ORDER BY start DESC LIMIT 1",
                    (window.run_id, window.end),
                ).fetchone()
                overlaps = last is not None and last[0] > window.start
                if not overlaps and insert_window(
                    db, self.path, window, event, event_id, sensor, self._now()
                ):
                    recorded.append(window)
            db.execute("DELETE FROM open_windows WHERE owner = ?", (owner,))
        return recorded
