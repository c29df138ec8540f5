"""Kernel signals held back from the IOPub callback, applied later in the order they came.

Every message of every kernel passes our observer inside Jupyter's own IOPub callback, where
caches are cold after Jupyter's work: there it only stamps the signal and appends it here.
Binding it to a notebook and a run and moving the engagement clock happen in :meth:`drain`,
which the clock calls first thing on every call that reads or changes a run (a tick, a status,
a start, an end, a completion, a presence report: ``EngagementClock.before_call``), the
binding calls before it changes which notebook a kernel serves or resets a kernel, and a timer
calls at most ``HOLD_FOR`` after the first signal held. The clock is driven by the times it is
given, never by when it is called, so a signal applied late with its own time, before anything
else the clock hears, counts exactly as if applied at once (tests/test_held_signals.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

HOLD_FOR = 1.0  # seconds a signal may wait when nothing reads the clock meanwhile

Apply = Callable[[str, str, float], None]  # (kernel_id, kind, at)


class HeldSignals:
    def __init__(
        self, apply: Apply, *, log: logging.Logger | logging.LoggerAdapter[object] | None = None
    ) -> None:
        self._apply = apply
        self._log = log or logging.getLogger("timeback_jupyter.kernels")
        self._held: list[tuple[str, str, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._draining = False

    def __len__(self) -> int:
        return len(self._held)

    def push(self, kernel_id: str, kind: str, at: float) -> None:
        """Hold a signal (the IOPub observer's whole work per signal)."""
        self._held.append((kernel_id, kind, at))
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script): held until the clock is next called
            return
        self._timer = loop.call_later(HOLD_FOR, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self.drain()

    def drain(self) -> None:
        """Apply every signal held, oldest first. A drain called while one is under way (the
        clock's hook, from the signal being applied) does nothing: what is still held then
        came after that signal, and follows it."""
        if not self._held or self._draining:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._draining = True
        try:
            while self._held:
                held, self._held = self._held, []
                for kernel_id, kind, at in held:
                    try:
                        self._apply(kernel_id, kind, at)
                    except Exception:  # one bad signal must not lose the ones after it
                        self._log.exception("timeback: kernel %s's %s lost", kernel_id, kind)
        finally:
            self._draining = False

    def close(self) -> None:
        """Apply what is held and stop the timer (the server stops)."""
        self.drain()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
