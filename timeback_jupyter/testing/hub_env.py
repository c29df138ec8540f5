"""What a JupyterHub with students as OS users needs from the machine: the students, and a
Python environment every student can run.

A school admin meets both: the hub (root) starts each student's server as that student, so the
server's interpreter, its standard library and every package must be readable and traversable
by any user. A virtualenv made from a pyenv Python under ``/root`` (mode 0700) is not: the
student's server dies at spawn with "Permission denied" (seen here). The fix is to install the
environment under a shared path (``/opt/...``), never under a home directory. On a machine whose
only suitable Python is under ``/root`` (this one), :func:`student_python` does that: it copies
the interpreter and its standard library into a shared folder (its library path made relative
to itself) and makes a venv there that sees this checkout's packages; nothing under ``/root``
is made readable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# The comment (GECOS) of the OS users the harness makes: a home is only ever wiped for them.
STUDENT_MARK = "timeback-jupyter test student"
# The recipe of the shared copy below: raise it when the copy changes (2: JupyterLab's assets
# and the built extensions linked in), so a cache made before is not taken as ready.
LAYOUT = 2
_STDLIB_SKIPPED = frozenset({"test", "site-packages", "idlelib", "tkinter", "turtledemo"})


def reachable_by_all(path: Path) -> bool:
    """Whether any user can reach ``path``: every folder above traversable, the file readable."""
    path = path.resolve()
    for folder in path.parents:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def student_python(cache: Path) -> Path:
    """A ``python`` any student can run, with this environment's packages (``sys.prefix``).

    The running environment itself when its interpreter and packages are reachable by all;
    else a shared copy of the interpreter under ``cache`` (made once, then reused).
    """
    site = Path(sysconfig.get_paths()["purelib"])
    if not reachable_by_all(site):
        raise RuntimeError(
            f"{site} is not readable by other users: the students' servers could not import "
            "the packages. Put the checkout and its environment under a path every user can "
            "read (e.g. /opt or /srv), not under a home directory."
        )
    own = Path(sys.executable)
    if reachable_by_all(own) and reachable_by_all(Path(sys.base_prefix) / "lib"):
        return own
    return _shared_venv(cache, site)


def _shared_venv(cache: Path, site: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = cache / "venv"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    made_for = f"{site}\nlayout {LAYOUT}"  # a copy made by an older recipe is made again
    if ready.exists() and ready.read_text() == made_for:
        return python
    shutil.rmtree(cache, ignore_errors=True)
    base = Path(sys.base_prefix)
    interpreter = cache / "python"
    (interpreter / "bin").mkdir(parents=True)
    (interpreter / "lib").mkdir()
    binary = interpreter / "bin" / version
    shutil.copy2(Path(sys._base_executable).resolve(), binary)  # type: ignore[attr-defined]
    for lib in (base / "lib").glob(f"lib{version}*.so*"):
        shutil.copy2(lib, interpreter / "lib" / lib.name)
    shutil.copytree(
        base / "lib" / version,
        interpreter / "lib" / version,
        ignore=lambda folder, names: {
            n for n in names if n in _STDLIB_SKIPPED or n.startswith("config-")
        },
    )
    _relative_runpath(binary, str(base / "lib"))
    subprocess.run([binary, "-m", "venv", "--without-pip", venv], check=True)
    packages = venv / "lib" / version / "site-packages"
    # addsitedir (not a bare path) so the .pth files there run too: the editable install's.
    (packages / "timeback-harness.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    # jupyter finds extensions enabled in {sys.prefix}/etc/jupyter: this venv's, not the repo's
    for sub in ("etc/jupyter/jupyter_server_config.d",):
        source = Path(sys.prefix) / sub
        if source.is_dir():
            shutil.copytree(source, venv / sub, dirs_exist_ok=True)
    # JupyterLab's assets and the prebuilt extensions, where Lab looks ({sys.prefix}/share/jupyter)
    for sub in ("lab", "labextensions"):
        source = Path(sys.prefix) / "share" / "jupyter" / sub
        if source.is_dir():
            (venv / "share" / "jupyter").mkdir(parents=True, exist_ok=True)
            (venv / "share" / "jupyter" / sub).symlink_to(source)
    _readable_by_all(cache)
    ready.write_text(made_for)
    return python


def _relative_runpath(binary: Path, old: str) -> None:
    """Point the interpreter's RUNPATH (where it loads libpython from) at its own ``../lib``.

    The string is rewritten in place, NUL-padded, as ``patchelf`` does for a shorter one; a
    binary linked statically (no such string) is left as it is."""
    data = binary.read_bytes()
    needle = old.encode() + b"\0"
    new = b"$ORIGIN/../lib"
    if data.count(needle) != 1 or len(new) > len(old):
        return
    binary.write_bytes(data.replace(needle, new + b"\0" * (len(needle) - len(new))))


def _readable_by_all(root: Path) -> None:
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IROTH | stat.S_IRGRP | _x(path))
    root.chmod(0o755)


def _x(path: Path) -> int:
    mode = path.stat().st_mode
    return stat.S_IXOTH | stat.S_IXGRP if path.is_dir() or mode & stat.S_IXUSR else 0


# The students are OS users of the whole machine: two test sessions at once (two checkouts)
# would empty each other's homes and kill each other's servers. One session at a time holds this.
STUDENTS_LOCK = Path(tempfile.gettempdir()) / "timeback-hub-students.lock"


@contextlib.contextmanager
def students_lock(timeout: float = 3600, path: Path = STUDENTS_LOCK) -> Iterator[None]:
    """Hold the machine's hub-students lock (waiting up to ``timeout`` seconds for another
    session to finish; it says so while it waits)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another hub test session held {path} too long") from None
                if not told:
                    print(f"waiting for another hub test session ({path})", file=sys.stderr)
                    told = True
                time.sleep(1)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_student(name: str) -> pwd.struct_passwd:
    """The OS user ``name`` (made with ``useradd`` if missing), its home emptied, mode 0700.

    Only users the harness made (their comment is :data:`STUDENT_MARK`) are touched."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "--comment", STUDENT_MARK, name],
            check=True,
            capture_output=True,
        )
        user = pwd.getpwnam(name)
    if user.pw_gecos != STUDENT_MARK:
        raise RuntimeError(f"{name} is an OS user the test harness did not make; not touching it")
    home = Path(user.pw_dir)
    home.mkdir(exist_ok=True)
    for child in home.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    os.chown(home, user.pw_uid, user.pw_gid)
    home.chmod(0o700)
    return user


def give(user: pwd.struct_passwd, source: Path, target: Path) -> Path:
    """Copy ``source`` (a file or folder) to ``target`` in the student's home, theirs
    (``source`` the same as ``target``: only handed over)."""
    if source == target:
        pass
    elif source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    home = Path(user.pw_dir)
    path = target
    while path != home and path.is_relative_to(home):
        os.chown(path, user.pw_uid, user.pw_gid)
        path = path.parent
    for folder, dirs, files in os.walk(target) if target.is_dir() else ():
        for name in (*dirs, *files):
            os.chown(Path(folder) / name, user.pw_uid, user.pw_gid)
    return target
