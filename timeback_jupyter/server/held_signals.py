"""Kernel signals held back from the IOPub callback, applied later in the order they came.

Every message of every kernel passes our observer inside Jupyter's own IOPub callback, where
caches are cold after Jupyter's work (measured there: ~25 µs a status to read it and hold
its signal, several times a tight loop's cost): so the observer only stamps a status with its
time and appends it here as it came, unread (:attr:`HeldSignals.entries`); which signal it
is, if any, is read when the held statuses are applied, one after another in a loop.
Binding a signal to a notebook and a run and moving the engagement clock happen in
:meth:`drain`, which the clock calls first thing on every call that reads or changes a run (a
tick, a status, a start, an end, a completion, a presence report:
``EngagementClock.before_call``), the binding calls before it changes which notebook a kernel
serves or resets a kernel, and a timer calls at most ``HOLD_FOR`` after the first signal held.
The clock is driven by the times it is given, never by when it is called, so a signal applied
late with its own time, before anything else the clock hears, counts exactly as if applied at
once (tests/test_held_signals.py).

A drain hands each stretch of consecutive signals of one kernel over in one call
(``apply_many``): the kernel's notebook and run are then looked up once for the stretch, not
once per signal. Signals of different kernels are never reordered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

HOLD_FOR = 1.0  # seconds a signal may wait when nothing reads the clock meanwhile

Apply = Callable[[str, str, float], None]  # (kernel_id, kind, at)
# (kernel_id, [(at, kind), ...]): one kernel's consecutive signals, in order
ApplyMany = Callable[[str, list[tuple[float, str]]], None]
# Reads a raw message held as it came: the signal it is, or None (not a signal).
Read = Callable[[Any], str | None]
# (kernel_id, read, what, at): ``what`` is the signal's kind when ``read`` is None, else the
# raw message that ``read`` tells
Held = tuple[str, Read | None, Any, float]


class HeldSignals:
    def __init__(
        self,
        apply: Apply,
        *,
        apply_many: ApplyMany | None = None,
        log: logging.Logger | logging.LoggerAdapter[object] | None = None,
    ) -> None:
        self._apply = apply
        self._apply_many = apply_many
        self._log = log or logging.getLogger("timeback_jupyter.kernels")
        # What is held, oldest first. The IOPub observer appends to this very list (it is
        # never replaced), calling arm() first when it was empty: see kernels.py.
        self.entries: list[Held] = []
        self._timer: asyncio.TimerHandle | None = None
        self._draining = False

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, kernel_id: str, kind: str, at: float) -> None:
        """Hold a signal whose kind is known."""
        if self._timer is None:
            self._arm()
        self.entries.append((kernel_id, None, kind, at))

    def arm(self) -> None:
        """Make sure a timer applies what is held within ``HOLD_FOR``: called by whoever
        appends to :attr:`entries` while it is empty."""
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
        entries = self.entries
        if not entries or self._draining:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._draining = True
        try:
            while entries:
                held = entries.copy()
                entries.clear()
                self._apply_all(held)
        finally:
            self._draining = False

    def _apply_all(self, held: list[Held]) -> None:
        """Each stretch of one kernel's signals, in order; a raw message that is no signal is
        dropped here."""
        kernel: str | None = None
        stretch: list[tuple[float, str]] = []
        for kernel_id, read, what, at in held:
            if read is None:
                kind = what
            else:
                try:
                    kind = read(what)
                except Exception:  # never lose the ones after it
                    self._log.exception("timeback: bad IOPub message from kernel %s", kernel_id)
                    continue
                if kind is None:
                    continue
            if kernel_id != kernel:
                if stretch:
                    self._apply_stretch(kernel, stretch)  # type: ignore[arg-type]
                kernel, stretch = kernel_id, []
            stretch.append((at, kind))
        if stretch:
            self._apply_stretch(kernel, stretch)  # type: ignore[arg-type]

    def _apply_stretch(self, kernel_id: str, stretch: list[tuple[float, str]]) -> None:
        if self._apply_many is not None:
            try:
                self._apply_many(kernel_id, stretch)
            except Exception:  # the applier keeps each signal's failure to itself: a bug
                lost = len(stretch)
                self._log.exception("timeback: kernel %s's %d signals lost", kernel_id, lost)
            return
        for at, kind in stretch:
            try:
                self._apply(kernel_id, kind, at)
            except Exception:  # one bad signal must not lose the ones after it
                self._log.exception("timeback: kernel %s's %s lost", kernel_id, kind)

    def close(self) -> None:
        """Apply what is held and stop the timer (the server stops)."""
        self.drain()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
