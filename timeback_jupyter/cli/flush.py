"""``jupyter timeback flush``: send the outbox now and say what is true afterwards.

Two paths, and the output names the one taken. Deliver from here with the configured sink, as
the server would, when the store's delivery lock is free; when it is held (a running Jupyter
server delivers this store), or there are no credentials here, find that server with
``list_running_servers`` and ask it (it holds the lock and the credentials).

Sent is not delivered: Timeback answers a send with a job and stores the events when the job
completes (``delivery/jobs.py``). The output says how many were sent, how many are confirmed
and how many still wait for Timeback's job; ``--wait SECONDS`` keeps following the jobs that
long, and then a job still not done is a failure (exit 1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, ClassVar

from traitlets import Float

from ..core import Core
from ..delivery import DeliveryError, DrainerBusy
from .base import EXIT_USAGE, CLIError, Command, common_aliases
from .servers import RunningServer, server_for_store

MAX_TIMEOUT = 60.0  # the server's flush endpoint accepts (0, 60]
MAX_WAIT = 3600.0
# Sinks that deliver on receipt (no job follows a send), and what that means.
ON_RECEIPT = {
    "local": "kept by the local sink on receipt: no job to wait for",
    "relay": "accepted by the hub's relay on receipt (the relay delivers them to Timeback)",
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A flush's report (``DrainReport`` as a dict, added up) and the store's state after it."""

    report: dict[str, Any]
    awaiting: int | None  # events waiting for Timeback's job (all of the store's); None: unknown

    @property
    def left(self) -> int | None:
        """Events not yet accepted by the sink (pending, or a send of unknown outcome)."""
        remaining = self.report.get("remaining")
        if remaining is None:
            return None
        return max(0, remaining - (self.awaiting or 0))


def add(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Two flushes' reports as one: counts added, the state (remaining, error) the latest."""
    out = dict(then)
    for key in ("sent", "queued", "retried", "rejected"):
        out[key] = first.get(key, 0) + then.get(key, 0)
    out["error"] = then.get("error") or first.get("error")
    return out


def describe(outcome: Outcome, sink: str) -> list[str]:
    report = outcome.report
    left = outcome.left
    receipt = ON_RECEIPT.get(sink) if not report.get("queued") and not outcome.awaiting else None
    # A sink with jobs: sent = accepted with a job; confirmed = their job completed (events
    # sent by an earlier flush or server count too). On receipt: sent = delivered.
    sent = report.get("sent", 0) if receipt else report.get("queued", 0)
    lines = [
        f"sent {sent} to the {sink} sink, {report.get('retried', 0)} to retry, "
        f"{report.get('rejected', 0)} rejected (moved to dead letters); "
        f"{left if left is not None else '?'} left to send"
    ]
    if receipt:
        lines.append(receipt)
    else:
        awaiting = outcome.awaiting if outcome.awaiting is not None else "?"
        lines.append(
            f"confirmed {report.get('sent', 0)} (Timeback's job completed), "
            f"{awaiting} waiting for Timeback's job"
        )
    if report.get("error"):
        lines.append(f"last error: {report['error']}")
    return lines


class FlushCommand(Command):
    """Send the outbox now, through the running server if one delivers this store."""

    name = "jupyter-timeback-flush"
    verb = "flush"
    description = (
        "Send the queued events now and report what happened: how many were sent, how many "
        "Timeback confirmed (its job completed) and how many still wait for Timeback's job. If "
        "a running Jupyter server delivers this store, the server is asked to flush; otherwise "
        "the events are sent from here through the configured sink. --wait SECONDS keeps "
        "following Timeback's jobs until they complete. Exits non-zero if events are left to "
        "send or rejected, or (with --wait) still wait for their job."
    )
    examples = """
    jupyter timeback flush
    jupyter timeback flush --timeout 30
    jupyter timeback flush --wait 120   # until Timeback confirmed every event sent
    """
    aliases: ClassVar[dict[str, Any]] = {
        **common_aliases,
        "timeout": "FlushCommand.timeout",
        "wait": "FlushCommand.wait",
    }

    timeout = Float(10.0, help="Seconds to keep sending (at most 60).").tag(config=True)
    wait = Float(
        0.0,
        help="Seconds more to wait for Timeback's jobs to confirm what was sent (0: don't).",
    ).tag(config=True)

    def run(self) -> int:
        if self.extra_args:
            raise CLIError(f"unexpected argument {self.extra_args[0]!r}", EXIT_USAGE)
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise CLIError(f"--timeout must be in (0, {MAX_TIMEOUT:g}] seconds", EXIT_USAGE)
        if not 0 <= self.wait <= MAX_WAIT:
            raise CLIError(f"--wait must be in [0, {MAX_WAIT:g}] seconds", EXIT_USAGE)
        path = self.store_path
        if not path.exists():
            self.open_store()  # raises the "no store yet" error
        core: Core | None = None
        unusable: DeliveryError | None = None
        try:
            core = self.core()
        except DeliveryError as err:
            # No credentials here (the server keeps them in its own environment): only a
            # running server can deliver.
            unusable = err
        outcome = asyncio.run(self._flush_here(core)) if core is not None else None
        if outcome is not None and core is not None:
            name = core.sink.name
            print(f"flushed from here: no running Jupyter server delivers {path}")
        else:
            # The delivery lock is held (or we cannot deliver): ask the server that has it.
            server = server_for_store(str(path), self.runtime_dir)
            if server is None or not server.delivering:
                if unusable is not None:
                    raise unusable
                raise CLIError(
                    f"another process delivers the events of {path}, and no Jupyter server "
                    f"in {self.runtime_dir} answers for it (a server with another runtime "
                    "dir, or password-only auth?); try again when it has stopped"
                )
            outcome, name = self._flush_there(server)
            print(f"flushed through the Jupyter server at {server.url} (pid {server.pid})")
        for line in describe(outcome, name):
            print(line)
        return 1 if self._failed(outcome) else 0

    def _failed(self, outcome: Outcome) -> bool:
        waiting = self.wait > 0 and bool(outcome.awaiting)
        return bool(outcome.left or outcome.report.get("rejected") or waiting)

    async def _flush_here(self, core: Core) -> Outcome | None:
        """Deliver from this process; None when another process holds the delivery lock."""
        try:
            try:
                report = dataclasses.asdict(await core.drainer.flush(self.timeout))
                awaiting = _awaiting(core.store.job_stats())
                deadline = time.monotonic() + self.wait
                # The drainer follows the pending jobs while it flushes: flush again until
                # none of them waits or the time is up.
                while _keep_waiting(report, awaiting, deadline):
                    more = await core.drainer.flush(deadline - time.monotonic())
                    report = add(report, dataclasses.asdict(more))
                    awaiting = _awaiting(core.store.job_stats())
            except DrainerBusy:
                return None
            finally:
                await core.drainer.stop()
        finally:
            await core.aclose()
        return Outcome(report, awaiting)

    def _flush_there(self, server: RunningServer) -> tuple[Outcome, str]:
        answer = server.flush(self.timeout)
        report = answer.get("report") or {}
        deadline = time.monotonic() + self.wait
        while _keep_waiting(report, _awaiting(_jobs(answer)), deadline):
            answer = server.flush(min(MAX_TIMEOUT, deadline - time.monotonic()))
            report = add(report, answer.get("report") or {})
        name = (answer.get("delivery") or {}).get("sink") or self.settings.sink
        return Outcome(report, _awaiting(_jobs(answer))), name


def _jobs(answer: dict[str, Any]) -> dict[str, Any]:
    return (answer.get("delivery") or {}).get("jobs") or {}


def _awaiting(jobs: dict[str, Any]) -> int | None:
    value = jobs.get("events_awaiting")
    return value if isinstance(value, int) else None


def _keep_waiting(report: dict[str, Any], awaiting: int | None, deadline: float) -> bool:
    """Whether to flush again for the jobs: some wait, and the drainer's next look at one
    (``waiting``, seconds) comes before the deadline."""
    left = deadline - time.monotonic()
    waiting = report.get("waiting")
    return bool(awaiting) and waiting is not None and waiting < left
