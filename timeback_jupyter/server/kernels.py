"""Watch each kernel's IOPub stream for student interaction (which messages are: iopub.py),
riding on jupyter_server's own subscription, so kernel traffic is observed, never delayed.

A kernel that dies says nothing on IOPub (the ``status: restarting``/``dead`` a browser sees
are made up by Jupyter's websocket handler): its restarter's callbacks say it, within its poll
interval (``KernelRestarter.time_to_dead``, 3 s), and we pass that on as ``kernel_reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from jupyter_client.session import Session

from .iopub import DECODE, DELIM, read_raw
from .iopub import Classifier as _Classifier

KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


OnSignal = Callable[[str, str, float], None]  # (kernel_id, kind, at)


class Hold(Protocol):
    """Where statuses are held raw (held_signals.HeldSignals): appended to ``entries`` as
    ``(kernel_id, read, parts, at)``, ``arm()`` called first when it is empty."""

    entries: list[Any]

    def arm(self) -> None: ...


_SHARE_POLL = 0.05
_SHARE_WAIT = 10.0  # then subscribe ourselves


class KernelWatcher:
    def __init__(
        self,
        kernel_manager: Any,
        on_signal: OnSignal,
        *,
        hold: Hold | None = None,
        on_reset: OnSignal | None = None,
        log: logging.Logger | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._km = kernel_manager
        # IOPub's signals go to on_signal from inside Jupyter's callback (keep it small: the
        # server only holds them there, see held_signals); a kernel's death to on_reset.
        self._on_signal = on_signal
        # Given, a status on Jupyter's shared stream is held there as it came, read later.
        self._hold = hold
        self._on_reset = on_reset or on_signal
        self._log = log or logging.getLogger("timeback_jupyter.kernels")
        self._now = now
        self._streams: dict[str, Any] = {}
        # kernel id -> (its manager, our restarter callback), so that it is added once and
        # removed when we let the kernel go
        self._lifetimes: dict[str, tuple[Any, Callable[[], None]]] = {}

    def now(self) -> float:
        """The time signals are stamped with."""
        return self._now()

    @property
    def watched(self) -> list[str]:
        return list(self._streams)

    def attach_all(self) -> None:
        for kernel_id in self._km.list_kernel_ids():
            self.attach(kernel_id)

    def attach(self, kernel_id: str, waited: float = 0.0) -> None:
        """Watch ``kernel_id``'s IOPub (again after a restart: ports may change).

        jupyter_server already subscribes to every kernel's IOPub for its activity watcher;
        riding on that subscription spares the server a second socket and a second dispatch
        of every message. Where it is not there to share (pending kernels, another kernel
        manager), we subscribe ourselves.
        """
        self._drop_stream(kernel_id)
        try:
            kernel = self._km.get_kernel(kernel_id)
        except Exception as err:  # a kernel that died meanwhile must not break the server
            self._log.warning("timeback: cannot watch kernel %s: %s", kernel_id, err)
            return
        self._watch_lifetime(kernel_id, kernel)
        if getattr(kernel, "_activity_stream", None) is None and waited < _SHARE_WAIT:
            # The start event comes just before Jupyter subscribes (once the kernel is ready).
            loop = asyncio.get_running_loop()
            self._streams[kernel_id] = loop.call_later(
                _SHARE_POLL, self.attach, kernel_id, waited + _SHARE_POLL
            )
            return
        session = Session(config=kernel.session.config, key=kernel.session.key)
        classify = _Classifier(session)
        on_signal, now, log = self._on_signal, self._now, self._log

        def on_recv(parts: list[bytes]) -> None:
            try:
                kind = classify(parts)
                if kind is not None:
                    on_signal(kernel_id, kind, now())
            except Exception:  # never let our observer raise into the kernel's stream
                log.exception("timeback: bad IOPub message from kernel %s", kernel_id)

        def after_jupyter(parts: list[bytes]) -> None:
            # A status (most output is let go before: _SharedStream), its signature checked by
            # Jupyter's own watcher: read from its raw JSON where it has IOPub's usual shape.
            try:
                if len(parts) > 6 and parts[1] == DELIM:  # one identity: the topic
                    kind = read_raw(parts[3], parts[4], parts[6])
                    if kind is DECODE:
                        kind = classify(parts, True)
                else:
                    kind = classify(parts, True)
                if kind is not None:
                    on_signal(kernel_id, kind, now())
            except Exception:  # never let our observer raise into the kernel's stream
                log.exception("timeback: bad IOPub message from kernel %s", kernel_id)

        hold = None if self._hold is None else (self._hold, kernel_id, _reader(classify), now)
        shared = _SharedStream.join(getattr(kernel, "_activity_stream", None), after_jupyter, hold)
        if shared is not None:
            self._streams[kernel_id] = shared
            return
        try:
            stream = kernel.connect_iopub()
        except Exception as err:
            self._log.warning("timeback: cannot watch kernel %s: %s", kernel_id, err)
            return
        stream.on_recv(on_recv)
        self._streams[kernel_id] = stream

    @staticmethod
    def _classify(session: Session, parts: list[bytes], verified: bool = False) -> str | None:
        return _Classifier(session)(parts, verified)

    def refresh(self) -> list[str]:
        """Follow Jupyter when it replaced a kernel's stream (a restart that changed ports), and
        let go of kernels it no longer has; returns those.

        A kernel whose restarter gives up is removed from Jupyter's map without a shutdown
        event (``MappingKernelManager._handle_kernel_died``): without this its stream, its
        restarter callback and the kernel object they hold would stay with us for ever."""
        try:
            known = set(self._km.list_kernel_ids())
        except Exception:
            known = None  # cannot tell now: keep everything until the next refresh
        gone = [] if known is None else [k for k in {*self._streams, *self._lifetimes}
                                        if k not in known]  # fmt: skip
        for kernel_id in gone:
            self.detach(kernel_id)
        for kernel_id, held in list(self._streams.items()):
            if not isinstance(held, _SharedStream):
                continue
            try:
                current = getattr(self._km.get_kernel(kernel_id), "_activity_stream", None)
            except Exception:
                continue  # gone: its shutdown event detaches it
            if current is not held.stream:
                self.attach(kernel_id)
        return gone

    def _watch_lifetime(self, kernel_id: str, kernel: Any) -> None:
        """Hear from the kernel's restarter the moment it finds the kernel dead, before it
        restarts it (``restart``) or gives up (``dead``): no cell of it runs any more. The
        restarter outlives restarts, so this is done once per kernel."""
        if kernel_id in self._lifetimes:
            return

        def died() -> None:
            try:
                self._on_reset(kernel_id, "kernel_reset", self._now())
            except Exception:  # never into the restarter: it must go on restarting the kernel
                self._log.exception("timeback: kernel %s died, not passed on", kernel_id)

        try:
            kernel.add_restart_callback(died, "restart")
            kernel.add_restart_callback(died, "dead")
        except Exception as err:  # another kernel manager: interrupts and restarts still tell
            self._log.warning("timeback: cannot follow kernel %s's restarts: %s", kernel_id, err)
            return
        self._lifetimes[kernel_id] = (kernel, died)

    def detach(self, kernel_id: str) -> None:
        """Let the kernel go: its IOPub and its restarter."""
        self._drop_stream(kernel_id)
        held = self._lifetimes.pop(kernel_id, None)
        if held is not None:
            kernel, died = held
            for event in ("restart", "dead"):
                with contextlib.suppress(Exception):  # already gone with its kernel
                    kernel.remove_restart_callback(died, event)

    def _drop_stream(self, kernel_id: str) -> None:
        stream = self._streams.pop(kernel_id, None)
        if isinstance(stream, asyncio.TimerHandle):
            stream.cancel()
        elif stream is not None:
            try:
                stream.close()
            except Exception:
                self._log.debug("timeback: closing IOPub of %s failed", kernel_id, exc_info=True)

    def detach_all(self) -> None:
        for kernel_id in {*self._streams, *self._lifetimes}:
            self.detach(kernel_id)


class _SharedStream:
    """Our observer chained behind jupyter_server's own IOPub callback on its stream, told of
    every message that may be a status."""

    def __init__(self, stream: Any, previous: Callable[[list[bytes]], Any]) -> None:
        self._stream = stream
        self._previous = previous
        self._chained: Callable[[list[bytes]], None] | None = None

    @property
    def stream(self) -> Any:
        return self._stream

    @classmethod
    def join(
        cls,
        stream: Any,
        observer: Callable[[list[bytes]], None],
        hold: tuple[Hold, str, Callable[[list[bytes]], str | None], Callable[[], float]]
        | None = None,
    ) -> _SharedStream | None:
        """Chain ``observer`` behind Jupyter's callback on ``stream``. With ``hold`` (where,
        kernel id, reader, clock), a status in IOPub's usual shape is not observed but held
        as it came, stamped, for the reader to tell later (held_signals)."""
        previous = getattr(stream, "_recv_callback", None)
        if stream is None or not callable(previous) or _closed(stream):
            return None
        shared = cls(stream, previous)
        if hold is not None:
            shared._chained = _holding(previous, observer, *hold)
            stream.on_recv(shared._chained)
            return shared

        def chained(parts: list[bytes]) -> None:
            # Jupyter's own bookkeeping first, exactly as before; a message it refuses (a bad
            # signature raises there) is not observed.
            previous(parts)
            # Every message of every kernel comes here, and in a running server each call
            # costs several times what a tight loop says (the caches are cold after Jupyter's
            # own work: BENCHMARKS.md, kernel path). Only a status can be a signal: one in
            # IOPub's usual shape (one identity, the topic) whose header has no "status" in it
            # (most of the traffic: output) is let go in this one frame.
            if len(parts) > 6 and parts[1] == DELIM and parts[3].find(b'"status"') == -1:
                return
            observer(parts)

        shared._chained = chained
        stream.on_recv(chained)
        return shared

    def close(self) -> None:
        # Give the stream back as we found it, unless Jupyter has replaced or closed it since.
        if getattr(self._stream, "_recv_callback", None) is self._chained and not _closed(
            self._stream
        ):
            self._stream.on_recv(self._previous)


def _reader(classify: _Classifier) -> Callable[[list[bytes]], str | None]:
    """Reads a status held as it came (in IOPub's usual shape), when it is applied."""

    def read(parts: list[bytes]) -> str | None:
        kind = read_raw(parts[3], parts[4], parts[6])
        return classify(parts, True) if kind is DECODE else kind

    return read


def _holding(
    previous: Callable[[list[bytes]], Any],
    observer: Callable[[list[bytes]], None],
    hold: Hold,
    kernel_id: str,
    read: Callable[[list[bytes]], str | None],
    now: Callable[[], float],
) -> Callable[[list[bytes]], None]:
    """Jupyter's callback, then ours, in one frame for every message of IOPub's usual shape
    (one identity, the topic): output is let go, a status is stamped and held unread. In a
    running server this runs with the caches cold after Jupyter's own work on the message
    (measured there: ~25 µs a status to read it and hold its signal, BENCHMARKS.md), so it
    calls nothing but the clock and the list's append."""
    entries, arm = hold.entries, hold.arm
    append = entries.append

    def chained(parts: list[bytes]) -> None:
        previous(parts)  # Jupyter's own first; a message it refuses (bad signature) raises
        if len(parts) > 6 and parts[1] == DELIM:
            if parts[3].find(b'"status"') != -1:  # find: see iopub.read_raw
                if not entries:
                    arm()
                append((kernel_id, read, parts, now()))
            return
        observer(parts)  # an unusual shape: read at once

    return chained


def _closed(stream: Any) -> bool:
    try:
        return bool(stream.closed())
    except Exception:
        return True
