"""Watch each kernel's IOPub stream for student interaction, as jupyter_server's own activity
watcher does: our own subscription per kernel, so kernel traffic is observed, never delayed.

A ``status: busy`` whose parent is an ``execute_request`` is a cell the student ran; its
``status: idle`` ends it. A ``status: busy`` whose parent is a ``comm_msg`` is a widget touched.
Everything else (completions, inspections, kernel_info, the debugger) is not interaction.
"""

from __future__ import annotations

import logging
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

OnSignal = Callable[[str, str, float], None]  # (kernel_id, kind, at)


class KernelWatcher:
    def __init__(
        self,
        kernel_manager: Any,
        on_signal: OnSignal,
        *,
        log: logging.Logger | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._km = kernel_manager
        self._on_signal = on_signal
        self._log = log or logging.getLogger("timeback_jupyter.kernels")
        self._now = now
        self._streams: dict[str, Any] = {}

    @property
    def watched(self) -> list[str]:
        return list(self._streams)

    def attach_all(self) -> None:
        for kernel_id in self._km.list_kernel_ids():
            self.attach(kernel_id)

    def attach(self, kernel_id: str) -> None:
        """Subscribe to ``kernel_id``'s IOPub (again after a restart: ports may change)."""
        self.detach(kernel_id)
        try:
            kernel = self._km.get_kernel(kernel_id)
            stream = kernel.connect_iopub()
        except Exception as err:  # a kernel that died meanwhile must not break the server
            self._log.warning("timeback: cannot watch kernel %s: %s", kernel_id, err)
            return
        session = Session(config=kernel.session.config, key=kernel.session.key)

        def on_recv(parts: list[bytes]) -> None:
            try:
                kind = self._classify(session, parts)
                if kind is not None:
                    self._on_signal(kernel_id, kind, self._now())
            except Exception:  # never let our observer raise into the kernel's stream
                self._log.exception("timeback: bad IOPub message from kernel %s", kernel_id)

        stream.on_recv(on_recv)
        self._streams[kernel_id] = stream

    @staticmethod
    def _classify(session: Session, parts: list[bytes]) -> str | None:
        _idents, fed = session.feed_identities(parts)
        # Most IOPub traffic is output: a byte search of the raw header skips the signature check
        # and JSON decoding of every message that cannot be a status (a miss costs nothing).
        if len(fed) < 2 or b'"status"' not in fed[1]:
            return None
        msg = session.deserialize(fed, content=False)
        if msg["header"].get("msg_type") != "status":
            return None
        parent_type = (msg.get("parent_header") or {}).get("msg_type")
        if parent_type not in ("execute_request", "comm_msg"):
            return None
        # Only now pay for the content: status messages are tiny.
        state = session.unpack(msg["content"]).get("execution_state")
        return _SIGNALS.get((parent_type, state))

    def detach(self, kernel_id: str) -> None:
        stream = self._streams.pop(kernel_id, None)
        if stream is not None:
            try:
                stream.close()
            except Exception:
                self._log.debug("timeback: closing IOPub of %s failed", kernel_id, exc_info=True)

    def detach_all(self) -> None:
        for kernel_id in list(self._streams):
            self.detach(kernel_id)
