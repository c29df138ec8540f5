"""One store, one owner: the process that records into a store holds an OS lock beside it.

Two servers recording into one store (a shared home directory, a second Lab started by mistake)
would each time the same student's notebooks, so time would count twice and the one-active-run
rule would hold only inside each process. The server that records holds ``<store>.owner`` with
``flock`` for its lifetime; a second one finds it held, records nothing and says who holds it.
Readers (``jupyter timeback status|report|export``) and ``flush`` (one drainer per store is the
drainer's own lease, :mod:`..delivery.lease`, made of the same :class:`FileLock`) never take it.

``flock`` is per open file and dies with its process, so a kill -9 frees the store at once. On a
network file system it may not be shared between machines at all, and SQLite's WAL needs shared
memory between every process opening the file: :func:`network_filesystem` finds such a store so
the server can say so (the fix: ``c.Timeback.store_path`` on a local disk).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .errors import StoreError

# File systems where SQLite's WAL (shared memory) and flock cannot be trusted across machines.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
        "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "lustre",
        "gpfs", "beegfs", "fuse.cephfs", "davfs", "fuse.davfs2",
    }
)  # fmt: skip
MOUNTINFO = "/proc/self/mountinfo"


class FileLock:
    """An exclusive ``flock`` on ``path``, held until :meth:`release` or the process ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock now, without waiting; False while another process holds it.

        OSError when the lock file cannot be created (a read-only directory).
        """
        if self._fd is not None:
            return True
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one server per store is then on the admin
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def write(self, text: str) -> None:
        """Replace the lock file's text (only while held: it describes the holder)."""
        if self._fd is None:
            return
        data = text.encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def read(self) -> str:
        try:
            return Path(self.path).read_text(errors="replace")
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


class StoreOwner:
    """The lock a recording server holds on its store (``<store>.owner``), and who holds it."""

    def __init__(self, store_path: str) -> None:
        self.store_path = str(store_path)
        self._lock = FileLock(self.store_path + ".owner")

    @property
    def path(self) -> str:
        return self._lock.path

    @property
    def held(self) -> bool:
        return self._lock.held

    def acquire(self, url: str = "") -> bool:
        """Become the store's owner; False while another process is. StoreError if the lock
        file cannot be made (the store could not be written either)."""
        try:
            Path(self.store_path).parent.mkdir(parents=True, exist_ok=True)
            taken = self._lock.acquire()
        except OSError as err:
            raise StoreError(
                f"{self.path}: cannot create the owner lock ({err.strerror})"
            ) from None
        if taken:
            self.describe(url)
        return taken

    def describe(self, url: str = "") -> None:
        """Say in the lock file who owns the store, for the message another server shows."""
        info = {"pid": os.getpid(), "host": socket.gethostname(), "url": url, "since": time.time()}
        self._lock.write(json.dumps(info))

    def holder(self) -> dict[str, Any]:
        """What the owner wrote about itself ({} if nothing readable yet)."""
        try:
            info = json.loads(self._lock.read() or "{}")
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def refusal(self) -> str:
        """Why this process does not record: the sentence a second server logs and shows."""
        info = self.holder()
        who = "another process"
        if info.get("pid"):
            who = f"another process (pid {info['pid']}"
            if info.get("host") and info["host"] != socket.gethostname():
                who += f" on {info['host']}"
            if info.get("url"):
                who += f", {info['url']}"
            if isinstance(info.get("since"), int | float):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
                who += f", since {since}"
            who += ")"
        return (
            f"the store {self.store_path} is recorded into by {who}: this server records "
            "nothing, so no time counts twice (it takes over when that one stops; or give it "
            "its own store with c.Timeback.store_path)"
        )

    def release(self) -> None:
        if self._lock.held:
            self._lock.write("")
        self._lock.release()


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space) undone."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(text: str) -> list[tuple[str, str]]:
    """``(mount point, file system type)`` of each line of ``/proc/<pid>/mountinfo``, in order."""
    found = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:] or len(fields) < 9:
            continue
        sep = fields.index("-", 6)
        if sep + 1 < len(fields):
            found.append((_unescape(fields[4]), fields[sep + 1]))
    return found


def filesystem_of(path: str, mountinfo: str) -> str | None:
    """The type of the file system the absolute ``path`` is on, per ``mountinfo``."""
    resolved = os.path.normpath(path)
    best: tuple[int, str] | None = None
    for point, fstype in mounts(mountinfo):
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        # the longest mount point wins; of equal ones the later, which is mounted over the other
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return None if best is None else best[1]


def network_filesystem(path: str, mountinfo_path: str | None = None) -> str | None:
    """The network file system type ``path`` is on (``nfs4``, ``cifs``...), None if local or
    unknown (no mountinfo: not Linux)."""
    try:
        text = Path(mountinfo_path or MOUNTINFO).read_text()
    except OSError:
        return None
    target = Path(path).absolute()
    while not target.exists() and target != target.parent:  # the store may not exist yet
        target = target.parent
    fstype = filesystem_of(str(target.resolve()), text)
    return fstype if fstype in NETWORK_FILESYSTEMS else None


def network_warning(path: str, fstype: str) -> str:
    return (
        f"the store {path} is on a network file system ({fstype}): SQLite's WAL and file "
        "locks are unreliable there, so two servers may both record or the file may be "
        "corrupted. Put it on a local disk: c.Timeback.store_path = "
        "'/path/on/a/local/disk/timeback.sqlite3' (and keep one server per store)"
    )
