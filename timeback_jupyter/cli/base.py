"""What every ``jupyter timeback`` subcommand shares: the server's config, the store, errors.

Each subcommand is a jupyter_core ``JupyterApp`` that reads the same config files as the
Jupyter server (``jupyter_server_config.py``/``.json``, then ``jupyter_timeback_config``) and
the same ``--Timeback.*`` command-line options, so it sees the store, sink and environment the
server uses. A failure the user can act on is one line on stderr and a non-zero exit status,
never a traceback (``--debug`` shows one for unexpected errors).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from jupyter_core.application import JupyterApp, base_aliases
from traitlets import Float, TraitError, default
from traitlets.config import Application
from traitlets.config.loader import KVArgParseConfigLoader

from .._version import __version__
from ..config import AppConfig, ConfigError, Credentials, Timeback
from ..core import Core, app_config_for, build_core, student_for, take_credentials
from ..delivery import DeliveryError
from ..identity import IdentityError, Student
from ..model import InvalidInput
from ..store import Store, StoreError

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A failure the user can act on: shown as one line on stderr, exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# Errors of the core whose message already says what is wrong and where.
EXPECTED_ERRORS = (CLIError, StoreError, ConfigError, IdentityError, InvalidInput, DeliveryError)

common_aliases: dict[str, Any] = {
    **base_aliases,
    "store": "Timeback.store_path",
}
common_flags: dict[str, Any] = {
    "debug": (
        {"Application": {"log_level": logging.DEBUG}},
        "Show the library logs, and a traceback on unexpected errors.",
    ),
}


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def silence_stdout() -> None:
    """The reader went away (``| head``): not an error of ours, nothing more to say. Point
    stdout at devnull so the interpreter's final flush does not fail with a traceback too."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Keep library log records (the drainer's retries, the token manager's errors) off the
    terminal unless asked: the command itself says what happened, once."""
    root = logging.getLogger()
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        old_level = root.level
        root.setLevel(logging.DEBUG)
    else:
        # With a handler on the root, logging's last-resort printer stays silent.
        handler = logging.NullHandler()
        old_level = root.level
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


class _OneLineParser(KVArgParseConfigLoader.parser_class):  # type: ignore[misc,name-defined]
    def error(self, message: str) -> NoReturn:
        # argparse prints its usage block and exits; one line that says what is wrong is enough.
        raise CLIError(f"{message} (see --help)", EXIT_USAGE)


class _Loader(KVArgParseConfigLoader):
    parser_class = _OneLineParser

    def _handle_unrecognized_alias(self, arg: str) -> None:
        # A mistyped option (--timezon=UTC) silently ignored would report the wrong thing.
        raise CLIError(f"unknown option --{arg} (see --help)", EXIT_USAGE)


class OneLineArgs(Application):
    """Command-line mistakes as one line on stderr (exit status 2), not argparse's block."""

    def _create_loader(
        self, argv: Any, aliases: Any, flags: Any, classes: Any
    ) -> KVArgParseConfigLoader:
        return _Loader(
            argv, aliases, flags, classes=classes, log=self.log, subcommands=self.subcommands
        )

    def update_config(self, config: Any) -> None:
        # Bad values from the command line or a config file: traitlets would log "Bad config
        # encountered during initialization" and exit 1; say it our way, as a usage error.
        try:
            super().update_config(config)
        except TraitError as err:
            raise CLIError(f"bad setting: {one_line(str(err))}", EXIT_USAGE) from None


class Command(OneLineArgs, JupyterApp):
    """Base of the subcommands (configure with ``c.Timeback.*`` like the server)."""

    version = __version__
    classes: ClassVar[list[Any]] = [Timeback]
    aliases: ClassVar[dict[str, Any]] = common_aliases
    flags: ClassVar[dict[str, Any]] = common_flags
    verb = ""  # the subcommand's name, for error lines

    busy_timeout = Float(
        5.0, help="Seconds to wait for a store another process is writing before giving up."
    ).tag(config=True)

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.WARNING

    def _log_format_default(self) -> str:
        return "%(message)s"

    @default("config_file_name")
    def _default_config_file_name(self) -> str:
        return "jupyter_server_config"

    @default("raise_config_file_errors")
    def _default_raise_config_file_errors(self) -> bool:
        return True

    def migrate_config(self) -> None:
        """A reporting tool must not write into the user's config dir (JupyterApp would)."""

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        try:
            super().load_config_file(suppress_errors=False)
            # The server extension also reads its own config file (ExtensionApp convention).
            Application.load_config_file(self, "jupyter_timeback_config", self.config_file_paths)
        except (TraitError, CLIError):
            raise
        except Exception as err:
            raise CLIError(
                f"cannot load the Jupyter config ({type(err).__name__}: {one_line(str(err))}); "
                f"searched {', '.join(self.config_file_paths)}"
            ) from None

    # -- what the subcommands use -------------------------------------------------------------

    _settings: Timeback | None = None

    @property
    def settings(self) -> Timeback:
        """``c.Timeback`` as the server would see it, validated."""
        if self._settings is None:
            try:
                settings = Timeback(parent=self)
            except TraitError as err:
                raise CLIError(f"bad c.Timeback setting: {one_line(str(err))}") from None
            self._settings = settings
        return self._settings

    @property
    def store_path(self) -> Path:
        return Path(self.settings.store_path).expanduser()

    def open_store(self) -> Store:
        """The existing store; never creates one (a report must not invent an empty store)."""
        path = self.store_path
        if not path.exists():
            raise CLIError(
                f"no store yet at {path}: nothing has been recorded (start Jupyter with "
                "timeback-jupyter and open an activity notebook, or set c.Timeback.store_path)"
            )
        if path.is_dir():
            raise CLIError(f"{path} is a directory, not a timeback store (c.Timeback.store_path)")
        return Store(path, busy_timeout=self.busy_timeout)

    def search_dirs(self) -> tuple[str, ...]:
        """Where the server looks for timeback.config.json: its root dir, then the cwd."""
        root = self.config.get("ServerApp", {}).get("root_dir")
        dirs = [str(Path(root).expanduser())] if isinstance(root, str) and root else []
        return (*dirs, os.getcwd())

    def app_config(self) -> AppConfig:
        return app_config_for(self.settings, self.search_dirs())

    def student(self) -> Student:
        """The student the server records for, with its fallback for the local sink."""
        return student_for(self.settings, os.environ)

    @staticmethod
    def credentials() -> Credentials | None:
        return take_credentials(os.environ)

    def core(self, *, identify: bool = False) -> Core:
        """The core as the server builds it, on the existing store (see :meth:`open_store`)."""
        return build_core(
            self.settings,
            environ=os.environ,
            credentials=self.credentials(),
            search=self.search_dirs(),
            identify=identify,
            open_store=self.open_store,
        )

    # -- running ------------------------------------------------------------------------------

    def run(self) -> int:
        """Do the work; return the exit status. Raise CLIError for failures."""
        raise NotImplementedError

    def fail(self, message: str, code: int = EXIT_FAILURE) -> None:
        prefix = f"jupyter timeback {self.verb}" if self.verb else "jupyter timeback"
        print(f"{prefix}: {one_line(message)}", file=sys.stderr, flush=True)
        self.exit(code)

    def start(self) -> None:
        verbose = self.log_level <= logging.INFO
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
        code = 0
        with quiet_libraries(verbose):
            try:
                code = self.run()
            except EXPECTED_ERRORS as err:
                self.fail(str(err), getattr(err, "code", EXIT_FAILURE))
            except BrokenPipeError:
                silence_stdout()
                code = EXIT_FAILURE
            except KeyboardInterrupt:
                self.fail("interrupted", 130)
            except Exception as err:
                if self.log_level <= logging.DEBUG:
                    raise
                self.fail(f"unexpected {type(err).__name__}: {err} (run with --debug for details)")
        if code:
            self.exit(code)
