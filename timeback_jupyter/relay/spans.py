"""Where a window's active seconds may go: the free part of its interval, per hub user.

Pure integer arithmetic on milliseconds. A user's stored active spans never overlap and each is
as long as the active time it carries, so the active time forwarded over any interval is at
most the interval's length, across all the user's servers and runs, whatever they send.
"""

from __future__ import annotations

from collections.abc import Iterable

Span = tuple[int, int]  # [start, end) in milliseconds


def free_gaps(busy: Iterable[Span], lo: int, hi: int) -> list[Span]:
    """The parts of [lo, hi) that no span of ``busy`` covers, in order."""
    gaps: list[Span] = []
    at = lo
    for start, end in sorted(busy):
        if end <= at:
            continue
        if start >= hi:
            break
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
        if at >= hi:
            break
    if at < hi:
        gaps.append((at, hi))
    return gaps


def place(busy: Iterable[Span], lo: int, hi: int, want: int) -> list[Span]:
    """Up to ``want`` ms of [lo, hi) not in ``busy``, latest first (the end of a window is
    when its heartbeat was written, the moment it is surest of), as spans in time order."""
    if want <= 0 or hi <= lo:
        return []
    placed: list[Span] = []
    left = want
    for start, end in reversed(free_gaps(busy, lo, hi)):
        take = min(left, end - start)
        placed.append((end - take, end))
        left -= take
        if left == 0:
            break
    return sorted(placed)
