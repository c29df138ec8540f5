"""On a JupyterHub, SIGINT stops the single-user server as SIGTERM does: with Jupyter's cleanup.

A hub stops a server with SIGINT first (``LocalProcessSpawner``, the default: SIGINT, then
SIGTERM after ``interrupt_timeout``, then SIGKILL). jupyter_server handles SIGINT only on a
terminal (it asks there for confirmation); a hub's server has none, so SIGINT is Python's
default: a KeyboardInterrupt ends the event loop and the process exits WITHOUT Jupyter's
cleanup. No extension is stopped (our open windows are not closed into the outbox and the last
events not sent: they wait for the student's next server), no kernel is shut down (each lingers
until it notices its parent gone). Seen on JupyterHub 6.1 with jupyter_server 2.21: "Interrupted..."
in the log and never "Shutting down N extensions". JupyterHub means SIGINT as a graceful stop
(jupyterhub#4864 made its own single-user app route it to ``_signal_stop``); its extension-based
single-user server, the default since JupyterHub 2, does not. So on a hub this routes SIGINT to
the server's ``_signal_stop`` too. Elsewhere (no hub, or a handler someone else installed)
nothing changes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

# Set by JupyterHub in every single-user server's environment.
HUB_VARIABLE = "JUPYTERHUB_SERVICE_PREFIX"


class GracefulSigint:
    """Installed by :meth:`install` (on a hub only), undone by :meth:`restore`."""

    def __init__(self, serverapp: Any, log: logging.Logger) -> None:
        self._serverapp = serverapp
        self._log = log
        self._previous: Any = None
        self._installed = False

    def install(self, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
        """Route SIGINT to the server's stop when on a hub and SIGINT is Python's default (or
        jupyter_server's terminal prompt, which has no one to answer it there)."""
        if HUB_VARIABLE not in environ or threading.current_thread() is not threading.main_thread():
            return False
        current = signal.getsignal(signal.SIGINT)
        prompt = getattr(self._serverapp, "_handle_sigint", None)
        if current is not signal.default_int_handler and current != prompt:
            return False  # someone chose a handler: theirs stands
        self._previous = current
        signal.signal(signal.SIGINT, self._stop)
        self._installed = True
        self._log.debug("timeback: on this hub, SIGINT stops the server with Jupyter's cleanup")
        return True

    def restore(self) -> None:
        """Put the handler found at :meth:`install` back (a test's process goes on)."""
        if self._installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) == self._stop:
                signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _stop(self, sig: int, frame: Any) -> None:
        if getattr(self._serverapp, "_stopping", False):
            return  # already stopping (a SIGTERM came first): one cleanup is enough
        self._serverapp._signal_stop(sig, frame)
