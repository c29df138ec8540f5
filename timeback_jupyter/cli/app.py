"""``jupyter timeback``: the root command, dispatching to its subcommands."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from jupyter_core.application import JupyterApp, NoStart
from traitlets.config import SingletonConfigurable

from .._version import __version__
from ..config import Timeback
from .base import (
    EXIT_USAGE,
    CLIError,
    Command,
    OneLineArgs,
    common_aliases,
    common_flags,
    one_line,
    silence_stdout,
)
from .doctor import DoctorCommand
from .export import ExportCommand
from .flush import FlushCommand
from .relay import RelayCommand
from .report import ReportCommand
from .status import StatusCommand
from .strip import StripCommand

SUBCOMMANDS: dict[str, tuple[type[Command], str]] = {
    "status": (StatusCommand, "Configuration in effect, student, sink, outbox, dead letters."),
    "report": (ReportCommand, "Time per activity, run and day, and completions."),
    "export": (ExportCommand, "Every stored event as JSON Lines."),
    "flush": (FlushCommand, "Send the outbox now and say what happened."),
    "doctor": (DoctorCommand, "Check the configuration end to end."),
    "strip": (StripCommand, "Remove run data from a notebook before handing it on."),
    "relay": (RelayCommand, "Run the JupyterHub relay service (on the hub's side)."),
}


class TimebackCommand(OneLineArgs, JupyterApp):
    """timeback-jupyter's command line: ``jupyter timeback <subcommand>``."""

    name = "jupyter-timeback"
    version = __version__
    description = (
        "Inspect and operate timeback-jupyter with the Jupyter server's configuration "
        "(c.Timeback.* in jupyter_server_config.py, or --Timeback.<name>=<value>)."
    )
    examples = """
    jupyter timeback status
    jupyter timeback report --html report.html
    jupyter timeback doctor
    jupyter timeback strip quiz.ipynb
    """
    subcommands: ClassVar[dict[str, Any]] = dict(SUBCOMMANDS)
    classes: ClassVar[list[Any]] = [Timeback]
    aliases: ClassVar[dict[str, Any]] = common_aliases
    flags: ClassVar[dict[str, Any]] = common_flags

    def _log_format_default(self) -> str:
        return "%(message)s"

    def migrate_config(self) -> None:
        """Never write into the user's config dir."""

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        choices = ", ".join(SUBCOMMANDS)
        if self.extra_args:
            raise CLIError(
                f"unknown subcommand {self.extra_args[0]!r}: choose one of {choices}", EXIT_USAGE
            )
        raise CLIError(f"choose a subcommand: {choices} (see --help)", EXIT_USAGE)


def _forget_instances() -> None:
    # traitlets keeps each app class as a process-wide singleton; a fresh run needs fresh ones.
    for cls in (TimebackCommand, *(c for c, _ in SUBCOMMANDS.values())):
        if issubclass(cls, SingletonConfigurable):
            cls.clear_instance()


def run(argv: list[str]) -> int:
    """Run ``jupyter timeback *argv`` in this process and return its exit status."""
    _forget_instances()
    app = TimebackCommand()
    try:
        app.initialize(argv)
        app.start()
    except CLIError as err:
        verb = getattr(app.subapp, "verb", "")
        prefix = f"jupyter timeback {verb}" if verb else "jupyter timeback"
        print(f"{prefix}: {one_line(str(err))}", file=sys.stderr, flush=True)
        return err.code
    except NoStart:
        return 0
    except BrokenPipeError:  # `jupyter timeback --help | head`
        silence_stdout()
        return 1
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        _forget_instances()
    return 0


def main(argv: list[str] | None = None) -> None:
    """The ``jupyter-timeback`` console script."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))
