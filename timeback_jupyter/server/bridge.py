"""How a kernel reaches this server without ever holding its credentials.

For every kernel we write ``<runtime dir>/timeback/kernel-<kernel id>.json`` holding the server's
URL and a token derived from a per-process secret and the kernel id. The kernel finds its own
file through its connection file name (``kernel-<id>.json``). A kernel token only ever acts on the
run of the notebook bound to that kernel: the server resolves that binding itself at request time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

TOKEN_HEADER = "X-Timeback-Kernel-Token"
KERNEL_HEADER = "X-Timeback-Kernel-Id"


class KernelTokens:
    def __init__(self, runtime_dir: str | os.PathLike[str], url: str) -> None:
        self.dir = Path(runtime_dir) / "timeback"
        self.url = url
        self._secret = secrets.token_bytes(32)

    def token(self, kernel_id: str) -> str:
        return hmac.new(self._secret, kernel_id.encode(), hashlib.sha256).hexdigest()

    def verify(self, kernel_id: str | None, token: str | None) -> bool:
        if not kernel_id or not token:
            return False
        return hmac.compare_digest(self.token(kernel_id), token)

    def file_for(self, kernel_id: str) -> Path:
        return self.dir / f"kernel-{kernel_id}.json"

    def publish(self, kernel_id: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.file_for(kernel_id)
        tmp = path.with_suffix(".tmp")
        # 0600: only the user the server runs as may read it.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "kernel_id": kernel_id, "token": self.token(kernel_id)}, f)
        os.replace(tmp, path)
        return path

    def withdraw(self, kernel_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.file_for(kernel_id).unlink()
