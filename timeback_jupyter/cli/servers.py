"""Finding the running Jupyter server that delivers a store, and talking to it.

While a server runs, its drainer holds the store's delivery lock; the CLI then asks that server
(``POST /timeback/api/flush`` with the server's own token from its runtime file) rather than
delivering beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from .base import CLIError


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int
    token: str
    status: dict[str, Any]  # its GET /timeback/api/status

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    @property
    def delivering(self) -> bool:
        delivery = self.status.get("delivery") or {}
        return bool(delivery) and delivery.get("state") != "standby"

    def flush(self, timeout: float) -> dict[str, Any]:
        """Ask the server to send its outbox now; its answer ``{report, delivery}``."""
        url = urljoin(self.url, "timeback/api/flush")
        try:
            response = httpx.post(
                url, json={"timeout": timeout}, headers=self._headers(), timeout=timeout + 15
            )
        except httpx.HTTPError as err:
            raise CLIError(
                f"the Jupyter server at {self.url} did not answer the flush "
                f"({type(err).__name__}: {err})"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code != 200:
            reason = data.get("message") if isinstance(data, dict) else None
            raise CLIError(
                f"the Jupyter server at {self.url} could not flush "
                f"(HTTP {response.status_code}: {reason or response.reason_phrase})"
            )
        return data


def _status(info: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    url = info.get("url")
    if not isinstance(url, str):
        return None
    token = info.get("token") or ""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        response = httpx.get(urljoin(url, "timeback/api/status"), headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None  # no timeback extension there, or a password-only server we cannot ask
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def server_for_store(
    store_path: str, runtime_dir: str | None = None, timeout: float = 5.0
) -> RunningServer | None:
    """The running server (of this user's runtime dir) that records into ``store_path``,
    preferring the one that holds its delivery; None when no server does."""
    # Imported here: jupyter_server.serverapp takes seconds to import, and only status and
    # flush need it.
    from jupyter_server.serverapp import list_running_servers

    found: list[RunningServer] = []
    for info in list_running_servers(runtime_dir):
        status = _status(info, timeout)
        if status is None:
            continue
        path = status.get("store_path")
        if isinstance(path, str) and _same_file(path, store_path):
            found.append(
                RunningServer(
                    str(info["url"]), int(info.get("pid", 0)), info.get("token") or "", status
                )
            )
    found.sort(key=lambda server: not server.delivering)
    return found[0] if found else None
