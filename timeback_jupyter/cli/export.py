"""``jupyter timeback export``: every stored event as JSON Lines."""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

from traitlets import Unicode

from .base import EXIT_USAGE, CLIError, Command, common_aliases
from .files import write_atomic_with


class ExportCommand(Command):
    """Every event in the store (sent, queued and dead letters), one JSON object per line."""

    name = "jupyter-timeback-export"
    verb = "export"
    description = (
        "Write every event in the store as JSON Lines: the outbox in order (sent and queued), "
        "then dead letters. To stdout, or to a file with --output."
    )
    examples = """
    jupyter timeback export > events.jsonl
    jupyter timeback export --output events.jsonl
    """
    aliases: ClassVar[dict[str, Any]] = {**common_aliases, "output": "ExportCommand.output"}

    output = Unicode("", help="Write here instead of stdout (replaced whole, never half).").tag(
        config=True
    )

    def run(self) -> int:
        if self.extra_args:
            raise CLIError(f"unexpected argument {self.extra_args[0]!r}", EXIT_USAGE)
        # Streamed from the store a page at a time (OutboxStore.export_jsonl): a store of
        # months of events is never all in memory.
        with self.open_store() as store:
            if self.output:
                target = os.path.expanduser(self.output)
                count = write_atomic_with(target, store.export_jsonl)
                plural = "" if count == 1 else "s"
                print(f"exported {count} event{plural} to {target}", file=sys.stderr)
            else:
                store.export_jsonl(sys.stdout)
                sys.stdout.flush()
        return 0
