"""The district benchmark's hub: its students and their tokens, made once and cached.

Through the hub's REST API 20,000 users took 50 minutes here (a role assignment and a commit
each); written with JupyterHub's own ORM while the hub is stopped, seconds, and kept under
``.cache/district/`` with the hub's database for the next run (:func:`hub_students`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT

CACHE = ROOT / ".cache" / "district"


def _bulk_students(db_path: Path, names: list[str], scope: str) -> list[str]:
    """Users and tokens written with JupyterHub's own ORM (its token hashing, its 'user' role)
    into the hub's database while the hub is stopped: through the REST API the hub took about
    150 ms per user here (a role assignment and a commit each), 50 minutes for 20,000."""
    from jupyterhub import orm
    from jupyterhub.utils import new_token

    session = orm.new_session_factory(f"sqlite:///{db_path}")()
    role = orm.Role.find(session, "user")
    tokens = []
    for name in names:
        user = orm.User(name=name)
        if role is not None:
            user.roles.append(role)
        session.add(user)
        token = orm.APIToken(generated=True, note="district bench", client_id="jupyterhub",
                             scopes=[scope])  # fmt: skip
        session.add(token)
        plain = new_token()
        token.token = plain  # stored hashed, by the ORM, as the hub stores its own
        token.user = user
        tokens.append(plain)
    session.commit()
    session.close()
    return tokens


HUB_FILES = ("jupyterhub.sqlite", "cookie_secret", "students.json")


def hub_dir(n: int) -> Path:
    """The hub's directory for this run, on tmpfs where there is one, with the cached database
    of ``n`` students copied in. The hub's SQLite commits every token's first use (its
    last_activity): on this machine's shared disk, busy with other work, those fsyncs let the
    hub answer 7 lookups a second (3 s each, queued), a figure of the disk, not of the hub or
    the relay; a district's hub keeps its database on a server (PostgreSQL) anyway."""
    shm = Path("/dev/shm")
    work = Path(tempfile.mkdtemp(prefix="tb-district-hub-", dir=shm if shm.is_dir() else None))
    for name in HUB_FILES:
        if (CACHE / f"hub-{n}" / name).exists():
            shutil.copy2(CACHE / f"hub-{n}" / name, work / name)
    return work


def keep_hub(work: Path, n: int) -> None:
    """The students made this run, into the cache for the next one."""
    cache = CACHE / f"hub-{n}"
    cache.mkdir(parents=True, exist_ok=True)
    for name in HUB_FILES:
        shutil.copy2(work / name, cache / name)


def hub_students(hub: Any, n: int, scope: str) -> tuple[list[str], list[str], float]:
    """The hub's ``n`` students and their tokens: from the cache, or made now (the hub is
    restarted around it) and cached with the hub's database."""
    cached = hub.tmp / "students.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        if len(data["names"]) == n:
            return data["names"], data["tokens"], 0.0
    began = time.monotonic()
    names = [f"d{i:05d}" for i in range(n)]
    hub.stop()
    tokens = _bulk_students(hub.tmp / "jupyterhub.sqlite", names, scope)
    hub.start()
    spent = time.monotonic() - began
    cached.write_text(json.dumps({"names": names, "tokens": tokens, "made_in_s": spent}))
    keep_hub(hub.tmp, n)
    return names, tokens, spent


def stop_proxy(hub_tmp: Path) -> None:
    """The hub's configurable-http-proxy, if it outlived the hub (seen here)."""
    try:
        pid = int((hub_tmp / "proxy.pid").read_text().strip())
        if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
