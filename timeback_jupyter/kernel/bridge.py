"""How a kernel reaches the timeback server extension of the Jupyter server that started it.

The server writes ``<runtime dir>/timeback/kernel-<kernel id>.json`` = ``{url, kernel_id, token}``
for every kernel it starts (``timeback_jupyter.server.bridge``). The kernel finds its own id in its
connection file name (``kernel-<id>.json``), reads that ticket and calls the kernel routes with the
token. The token only ever acts on the kernel's own notebook; no Timeback credential is involved.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# The same names as timeback_jupyter.server.bridge: kernel/ must not import the server side.
TOKEN_HEADER = "X-Timeback-Kernel-Token"
KERNEL_HEADER = "X-Timeback-Kernel-Id"
ROUTES = "timeback/api/kernel"
# A kernel started by a Jupyter server gets its ticket right after it starts: wait this long for
# it before deciding that the server has no timeback extension.
TICKET_WAIT = 3.0

NOT_STARTED_BY_SERVER = "no Jupyter server with the timeback extension started this kernel"

_CONNECTION_FILE = re.compile(r"^kernel-(?P<id>[A-Za-z0-9._-]+)\.json$")


class ServerUnavailable(Exception):
    """The timeback server extension cannot be reached; the message says why, in one line."""


class ServerRefused(Exception):
    """The server answered with an error: ``status`` and its specific one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Ticket:
    url: str
    kernel_id: str
    token: str = field(repr=False)


def connection_file() -> str:
    """This kernel's connection file; ServerUnavailable outside an IPython kernel."""
    try:
        from ipykernel.connect import get_connection_file

        return get_connection_file()
    except (ImportError, RuntimeError, OSError) as err:
        raise ServerUnavailable(f"not running in a Jupyter kernel ({err})") from None


def kernel_id_of(path: str | os.PathLike[str]) -> str:
    match = _CONNECTION_FILE.match(Path(path).name)
    if match is None:
        raise ServerUnavailable(
            f"{NOT_STARTED_BY_SERVER} (its connection file {Path(path).name} names no kernel id)"
        )
    return match["id"]


def ticket_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Where the ticket may be: beside the connection file, then in our runtime dir."""
    name = f"kernel-{kernel_id_of(path)}.json"
    places = [Path(path).parent / "timeback" / name]
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        places.append(Path(jupyter_runtime_dir()) / "timeback" / name)
    except Exception:  # the first place is the usual one; this one is a fallback
        pass
    return list(dict.fromkeys(places))


def read_ticket(path: str | os.PathLike[str], *, wait: float = 0.0) -> Ticket:
    """The ticket for the kernel of connection file ``path``, waiting up to ``wait`` seconds."""
    places = ticket_paths(path)
    deadline = time.monotonic() + wait
    while True:
        for place in places:
            try:
                data = json.loads(place.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as err:
                raise ServerUnavailable(f"{place} cannot be read ({err})") from None
            if not isinstance(data, dict) or not all(
                isinstance(data.get(k), str) and data[k] for k in ("url", "kernel_id", "token")
            ):
                raise ServerUnavailable(f"{place} is not a timeback kernel ticket")
            return Ticket(data["url"], data["kernel_id"], data["token"])
        if time.monotonic() >= deadline:
            raise ServerUnavailable(
                f"{NOT_STARTED_BY_SERVER} (no {places[0].name} in {places[0].parent})"
            )
        time.sleep(0.05)


class Bridge:
    """Calls the kernel routes. The ticket is read again for every call: a Jupyter server that
    restarted while the kernel lived publishes a new token."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def ticket(self, wait: float = 0.0) -> Ticket:
        return read_ticket(self.path, wait=wait)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            # trust_env=False: a proxy set for the internet must not see calls to our own server.
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout, connect=2.0), trust_env=False
            )
        return self._client

    def get(self, route: str) -> dict[str, Any]:
        return self._call("GET", route, None)

    def post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", route, body)

    def _call(self, method: str, route: str, body: dict[str, Any] | None) -> dict[str, Any]:
        ticket = self.ticket()
        if not ticket.url.startswith(("http://", "https://")):
            raise ServerUnavailable(f"the Jupyter server's URL {ticket.url!r} is not supported")
        url = f"{ticket.url.rstrip('/')}/{ROUTES}/{route}"
        headers = {KERNEL_HEADER: ticket.kernel_id, TOKEN_HEADER: ticket.token}
        try:
            response = self.client.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise ServerUnavailable(
                f"the Jupyter server at {ticket.url} does not answer ({type(err).__name__})"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 403:
            raise ServerUnavailable(
                f"the Jupyter server at {ticket.url} refused this kernel's token "
                "(was the server restarted without this kernel?)"
            )
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ServerRefused(
                response.status_code,
                message if isinstance(message, str) and message else f"HTTP {response.status_code}",
            )
        if not isinstance(data, dict):
            raise ServerRefused(response.status_code, "the server's answer is not a JSON object")
        return data

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
