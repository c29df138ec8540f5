"""The extension's URLs and the handler answering each (see :mod:`.handlers`)."""

from __future__ import annotations

from .handlers import (
    FlushHandler,
    KernelCompleteHandler,
    KernelEndHandler,
    KernelExerciseHandler,
    KernelRunHandler,
    PresenceHandler,
    RunCompleteHandler,
    RunEndHandler,
    RunExerciseHandler,
    RunHandler,
    RunsHandler,
    StatusHandler,
)
from .presence_socket import PresenceSocketHandler

API = r"/timeback/api"
_RUN = r"[^/]+"  # validated by the service, so a bad id gets a 400 that says why


def routes() -> list[tuple[str, type]]:
    return [
        (rf"{API}/status", StatusHandler),
        (rf"{API}/flush", FlushHandler),
        (rf"{API}/runs", RunsHandler),
        (rf"{API}/runs/({_RUN})", RunHandler),
        (rf"{API}/runs/({_RUN})/end", RunEndHandler),
        (rf"{API}/runs/({_RUN})/complete", RunCompleteHandler),
        (rf"{API}/runs/({_RUN})/exercises", RunExerciseHandler),
        (rf"{API}/presence", PresenceHandler),
        (rf"{API}/presence/socket", PresenceSocketHandler),
        (rf"{API}/kernel/run", KernelRunHandler),
        (rf"{API}/kernel/end", KernelEndHandler),
        (rf"{API}/kernel/complete", KernelCompleteHandler),
        (rf"{API}/kernel/exercises", KernelExerciseHandler),
    ]
