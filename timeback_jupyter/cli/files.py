"""Writing files whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .base import CLIError


def write_atomic(
    path: str | os.PathLike[str], text: str, *, keep_mode_of: Path | None = None
) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part.

    ``keep_mode_of``: give the new file that file's permission bits (rewriting in place).
    """
    write_atomic_with(path, lambda f: f.write(text), keep_mode_of=keep_mode_of)


def write_atomic_with[T](
    path: str | os.PathLike[str],
    write: Callable[[IO[str]], T],
    *,
    keep_mode_of: Path | None = None,
) -> T:
    """:func:`write_atomic` with the text written by ``write(file)`` as it goes (streamed);
    returns what ``write`` returned."""
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise CLIError(f"cannot write {target}: directory {directory} does not exist")
    if target.is_dir():
        raise CLIError(f"cannot write {target}: it is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise CLIError(f"cannot write {target}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        mode = 0o644 & ~_umask()
        if keep_mode_of is not None:
            with contextlib.suppress(OSError):
                mode = stat.S_IMODE(keep_mode_of.stat().st_mode)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        return result
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CLIError(f"cannot write {target}: {err.strerror or err}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
