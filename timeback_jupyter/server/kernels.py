"""Watch each kernel's IOPub stream for student interaction, as jupyter_server's own activity
watcher does: our own subscription per kernel, so kernel traffic is observed, never delayed.

A ``status: busy`` whose parent is an ``execute_request`` is a cell the student ran; its
``status: idle`` ends it. A ``status: busy`` whose parent is a ``comm_msg`` is a widget touched.
Everything else (completions, inspections, kernel_info, the debugger) is not interaction.

A kernel that dies says nothing on IOPub (the ``status: restarting``/``dead`` a browser sees
are made up by Jupyter's websocket handler): its restarter's callbacks say it, within its poll
interval (``KernelRestarter.time_to_dead``, 3 s), and we pass that on as ``kernel_reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from jupyter_client.session import Session

KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"

# (parent msg_type, execution_state) -> clock signal kind
_SIGNALS = {
    ("execute_request", "busy"): "execute_start",
    ("execute_request", "idle"): "execute_end",
    ("comm_msg", "busy"): "comm",
}
_PARENTS = frozenset(parent for parent, _ in _SIGNALS)
_RAW_SIGNALS = {(p.encode(), state.encode()): kind for (p, state), kind in _SIGNALS.items()}
# A key and its string value in raw JSON. A quote inside a JSON string is escaped, so only a
# real key matches (headers are flat); a value with an escape in it does not match, and is
# decoded instead.
_MSG_TYPE = re.compile(rb'"msg_type"\s*:\s*"([^"\\]*)"')
_STATE = re.compile(rb'"execution_state"\s*:\s*"([^"\\]*)"')


def _written(key: str, value: str) -> tuple[bytes, bytes]:
    """``"key": "value"`` as json (Jupyter's default packer) and orjson (ipykernel's when it
    is installed) write it; a quote inside a string is escaped, so only a real key matches."""
    return f'"{key}": "{value}"'.encode(), f'"{key}":"{value}"'.encode()


_STATUS = _written("msg_type", "status")
_PARENT_WRITTEN = tuple(
    (parent, _written("msg_type", parent)) for parent in dict.fromkeys(p for p, _ in _SIGNALS)
)
_STATE_WRITTEN = tuple((state, _written("execution_state", state)) for state in ("busy", "idle"))
DELIM = b"<IDS|MSG>"  # jupyter_client.session.DELIM: identities end, the message begins
_DECODE = "decode"  # _read_raw: the raw JSON does not tell, decode the message

OnSignal = Callable[[str, str, float], None]  # (kernel_id, kind, at)
_SHARE_POLL = 0.05
_SHARE_WAIT = 10.0  # then subscribe ourselves


class KernelWatcher:
    def __init__(
        self,
        kernel_manager: Any,
        on_signal: OnSignal,
        *,
        on_reset: OnSignal | None = None,
        log: logging.Logger | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._km = kernel_manager
        # IOPub's signals go to on_signal from inside Jupyter's callback (keep it small: the
        # server only holds them there, see held_signals); a kernel's death to on_reset.
        self._on_signal = on_signal
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
                    kind = _read_raw(parts[3], parts[4], parts[6])
                    if kind is _DECODE:
                        kind = classify(parts, True)
                else:
                    kind = classify(parts, True)
                if kind is not None:
                    on_signal(kernel_id, kind, now())
            except Exception:  # never let our observer raise into the kernel's stream
                log.exception("timeback: bad IOPub message from kernel %s", kernel_id)

        shared = _SharedStream.join(getattr(kernel, "_activity_stream", None), after_jupyter)
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


class _Classifier:
    """Which signal an IOPub message is, if any, for one kernel's session (see the module).

    Runs for every message of every kernel: the session's unpacker is looked up once (a
    traitlet), and the wire parts are split by hand."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._unpack = session.unpack

    def __call__(self, parts: list[bytes], verified: bool = False) -> str | None:
        try:
            fed = parts[parts.index(DELIM) + 1 :]
        except ValueError:  # not a message: Jupyter's own error for it
            _idents, fed = self._session.feed_identities(parts)
        # Most IOPub traffic is output: a byte search of the raw header skips every message that
        # cannot be a status (a miss costs nothing).
        if len(fed) < 5 or b'"status"' not in fed[1]:
            return None
        unpack = self._unpack
        if verified:
            # Jupyter's own watcher has just checked this message's signature on the same
            # stream: the three fields we need are read from the raw JSON, nothing is decoded.
            kind = _read_raw(fed[1], fed[2], fed[4])
            if kind is not _DECODE:
                return kind
            # not plain JSON: decode
            if unpack(fed[1]).get("msg_type") != "status":
                return None
            parent_type = (unpack(fed[2]) or {}).get("msg_type")
            if parent_type not in _PARENTS:
                return None
            return _SIGNALS.get((parent_type, unpack(fed[4]).get("execution_state")))
        msg = self._session.deserialize(fed, content=False)
        if msg["header"].get("msg_type") != "status":
            return None
        parent_type = (msg.get("parent_header") or {}).get("msg_type")
        if parent_type not in _PARENTS:
            return None
        # Only now pay for the content: status messages are tiny.
        state = unpack(msg["content"]).get("execution_state")
        return _SIGNALS.get((parent_type, state))


def _read_raw(header: bytes, parent: bytes, content: bytes) -> str | None:
    """The signal a verified message is, read from its raw JSON parts; ``_DECODE`` when a
    field is not there as plain JSON (a parent header that is ``{}``, an escape, another
    packer), and the message must be decoded to tell.

    A signal's three fields are first looked for as json and orjson write them (a byte
    search each: a regular expression's match objects cost several times more in a running
    server); anything else is read with the expressions."""
    if _STATUS[0] in header or _STATUS[1] in header:
        for parent_type, written in _PARENT_WRITTEN:
            if written[0] in parent or written[1] in parent:
                for state, said in _STATE_WRITTEN:
                    if said[0] in content or said[1] in content:
                        return _SIGNALS.get((parent_type, state))
                break
    msg_type = _MSG_TYPE.search(header)
    if msg_type is None:
        return _DECODE
    if msg_type[1] != b"status":
        return None
    parent_type, state = _MSG_TYPE.search(parent), _STATE.search(content)
    if parent_type is None or state is None:
        return _DECODE
    return _RAW_SIGNALS.get((parent_type[1], state[1]))


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
    def join(cls, stream: Any, observer: Callable[[list[bytes]], None]) -> _SharedStream | None:
        previous = getattr(stream, "_recv_callback", None)
        if stream is None or not callable(previous) or _closed(stream):
            return None
        shared = cls(stream, previous)

        def chained(parts: list[bytes]) -> None:
            # Jupyter's own bookkeeping first, exactly as before; a message it refuses (a bad
            # signature raises there) is not observed.
            previous(parts)
            # Every message of every kernel comes here, and in a running server each call
            # costs several times what a tight loop says (the caches are cold after Jupyter's
            # own work: BENCHMARKS.md, kernel path). Only a status can be a signal: one in
            # IOPub's usual shape (one identity, the topic) whose header has no "status" in it
            # (most of the traffic: output) is let go in this one frame.
            if len(parts) > 6 and parts[1] == DELIM and b'"status"' not in parts[3]:
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


def _closed(stream: Any) -> bool:
    try:
        return bool(stream.closed())
    except Exception:
        return True
