"""``jupyter timeback flush``: send the outbox now and say what happened.

Two paths, and the output names the one taken. Deliver from here with the configured sink, as
the server would, when the store's delivery lock is free; when it is held (a running Jupyter
server delivers this store), or there are no credentials here, find that server with
``list_running_servers`` and ask it (it holds the lock and the credentials).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, ClassVar

from traitlets import Float

from ..core import Core
from ..delivery import DeliveryError, DrainerBusy
from .base import EXIT_USAGE, CLIError, Command, common_aliases
from .servers import server_for_store

MAX_TIMEOUT = 60.0  # the server's flush endpoint accepts (0, 60]


def describe(report: dict[str, Any], sink: str) -> list[str]:
    remaining = report.get("remaining")
    lines = [
        f"sent {report.get('sent', 0)} to the {sink} sink, {report.get('retried', 0)} to retry, "
        f"{report.get('rejected', 0)} rejected (moved to dead letters); "
        f"{remaining if remaining is not None else '?'} left in the outbox"
    ]
    if report.get("error"):
        lines.append(f"last error: {report['error']}")
    return lines


def _failed(report: dict[str, Any]) -> bool:
    return bool(report.get("remaining") or report.get("rejected"))


class FlushCommand(Command):
    """Send the outbox now, through the running server if one delivers this store."""

    name = "jupyter-timeback-flush"
    verb = "flush"
    description = (
        "Send the queued events now and report what happened. If a running Jupyter server "
        "delivers this store, the server is asked to flush; otherwise the events are sent "
        "from here through the configured sink. Exits non-zero if events are left or rejected."
    )
    examples = """
    jupyter timeback flush
    jupyter timeback flush --timeout 30
    """
    aliases: ClassVar[dict[str, Any]] = {**common_aliases, "timeout": "FlushCommand.timeout"}

    timeout = Float(10.0, help="Seconds to keep trying (at most 60).").tag(config=True)

    def run(self) -> int:
        if self.extra_args:
            raise CLIError(f"unexpected argument {self.extra_args[0]!r}", EXIT_USAGE)
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise CLIError(f"--timeout must be in (0, {MAX_TIMEOUT:g}] seconds", EXIT_USAGE)
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
        report = asyncio.run(self._flush_here(core)) if core is not None else None
        if report is not None and core is not None:
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
            answer = server.flush(self.timeout)
            report = answer.get("report") or {}
            name = (answer.get("delivery") or {}).get("sink") or self.settings.sink
            print(f"flushed through the Jupyter server at {server.url} (pid {server.pid})")
        for line in describe(report, name):
            print(line)
        return 1 if _failed(report) else 0

    async def _flush_here(self, core: Core) -> dict[str, Any] | None:
        """Deliver from this process; None when another process holds the delivery lock."""
        try:
            try:
                report = await core.drainer.flush(self.timeout)
            except DrainerBusy:
                return None
            finally:
                await core.drainer.stop()
        finally:
            await core.aclose()
        return dataclasses.asdict(report)
