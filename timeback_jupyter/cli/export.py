"""``jupyter timeback export``: every stored event as JSON Lines."""

from __future__ import annotations

import io
import os
import sys
from typing import Any, ClassVar

from traitlets import Unicode

from .base import EXIT_USAGE, CLIError, Command, common_aliases
from .files import write_atomic


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
        with self.open_store() as store:
            buffer = io.StringIO()
            count = store.export_jsonl(buffer)
        if self.output:
            target = os.path.expanduser(self.output)
            write_atomic(target, buffer.getvalue())
            print(f"exported {count} event{'' if count == 1 else 's'} to {target}", file=sys.stderr)
        else:
            sys.stdout.write(buffer.getvalue())
            sys.stdout.flush()
        return 0
