"""The engagement clock: signals in, heartbeat windows out.

Pure and driven by injected time: every call takes ``now`` (POSIX seconds) and nothing here
reads a clock, so the same script always gives the same windows. At each instant a live run is
*active*, *inactive* or *paused*:

- seen: a presence source of the run is visible and focused and reported less than
  ``presence_ttl`` ago; a run that never had a presence report is seen (kernel-only mode:
  without the browser extension, kernel traffic is all we know);
- recent: a signal (open, cell start/end, widget message, input) less than ``idle_after`` ago,
  or a cell still running and the student's last touch (open, cell start, widget message,
  input: not a cell's end) less than ``running_cell_limit`` ago. A cell's end that comes after
  its run stopped being recent is no signal (the student has not touched anything), and a
  ``kernel_reset`` (restart, death, interrupt) ends every running cell of the run;
- active: seen and recent, and, of the student's runs that are, the one with the latest signal
  (tie: opened later), so a student's time is never counted twice;
- paused: not active for ``abandon_after``; the run stops heartbeating until it is the one
  active run again (a signal or a foreground presence of its own, or the run that kept it out
  lapsing while it is seen and recent), and the gap is counted nowhere;
- inactive: the rest.

State only changes at calls and at known instants (idle expiry, presence expiry, pause onset,
window boundary), so time between calls is integrated exactly, piece by piece, with no
per-second loop. The one-active rule couples a student's runs, but lazily: a call costs O(1) in
the student's other runs, and a tick settles only the runs due by its instant (see
:mod:`.integration` and :mod:`.due`); students are independent. What a call
learns arrives at its ``now``: an input reported late (``last_input`` in the past) makes the run
recent from then on, it does not rewrite time already counted.
"""

from .engagement import EngagementClock
from .runs import (
    MIN_HEARTBEAT,
    SIGNAL_KINDS,
    TOUCH_KINDS,
    Reading,
    SegmentHook,
    Snapshot,
    State,
)

__all__ = [
    "MIN_HEARTBEAT",
    "SIGNAL_KINDS",
    "TOUCH_KINDS",
    "EngagementClock",
    "Reading",
    "SegmentHook",
    "Snapshot",
    "State",
]
