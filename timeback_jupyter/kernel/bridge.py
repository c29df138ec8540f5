"""How a kernel reaches the timeback server extension of the Jupyter server that started it.

The server writes ``<runtime dir>/timeback/kernel-<kernel id>.json`` = ``{url, kernel_id, token}``
for every kernel it starts (``timeback_jupyter.server.bridge``). The kernel finds its own id in its
connection file name (``kernel-<id>.json``), reads that ticket and calls the kernel routes with the
token. The token only ever acts on the kernel's own notebook; no Timeback credential is involved.

The calls use the standard library's ``http.client``, imported at the first call: httpx would
add tens of milliseconds to ``%load_ext timeback_jupyter`` in every kernel, for a few small
requests to a server on the same machine.
"""

from __future__ import annotations

import json
import os
import re
import select
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from http.client import HTTPConnection

# The same names as timeback_jupyter.server.bridge: kernel/ must not import the server side.
TOKEN_HEADER = "X-Timeback-Kernel-Token"
KERNEL_HEADER = "X-Timeback-Kernel-Id"
ROUTES = "timeback/api/kernel"
# A kernel started by a Jupyter server gets its ticket right after it starts: wait this long for
# it before deciding that the server has no timeback extension.
TICKET_WAIT = 3.0
# Connecting to a server on this machine is instant when it runs; an answer may take longer.
CONNECT_TIMEOUT = 2.0

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
    restarted while the kernel lived publishes a new token (and maybe a new port)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._lock = threading.Lock()  # one request at a time on the kept connection
        self._conn: HTTPConnection | None = None
        self._origin: tuple[str, str, int] | None = None

    def ticket(self, wait: float = 0.0) -> Ticket:
        return read_ticket(self.path, wait=wait)

    def get(self, route: str) -> dict[str, Any]:
        return self._call("GET", route, None)

    def post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", route, body)

    def _call(self, method: str, route: str, body: dict[str, Any] | None) -> dict[str, Any]:
        ticket = self.ticket()
        try:
            url = urlsplit(ticket.url)
            origin = (url.scheme, url.hostname or "", url.port or 0)
            target = f"{url.path.rstrip('/')}/{ROUTES}/{route}"
        except ValueError:  # a port that is not a number, a malformed IPv6 host
            origin, target = ("", "", 0), ""
        if origin[0] not in ("http", "https") or not origin[1]:
            raise ServerUnavailable(f"the Jupyter server's URL {ticket.url!r} is not supported")
        headers = {
            KERNEL_HEADER: ticket.kernel_id,
            TOKEN_HEADER: ticket.token,
            "Accept": "application/json",
        }
        content = None
        if body is not None:
            # As httpx's json= wrote it (NaN is refused: it is not JSON).
            content = json.dumps(
                body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
            headers["Content-Type"] = "application/json"
        from http.client import HTTPException

        try:
            with self._lock:
                status, raw = self._request(origin, method, target, content, headers)
        except (OSError, HTTPException, ValueError) as err:
            # ValueError: what http.client says of a host or header it cannot encode.
            raise ServerUnavailable(
                f"the Jupyter server at {ticket.url} does not answer ({type(err).__name__})"
            ) from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if status == 403:
            raise ServerUnavailable(
                f"the Jupyter server at {ticket.url} refused this kernel's token "
                "(was the server restarted without this kernel?)"
            )
        if status >= 400:
            # Jupyter's API error shape: {"message", "reason"}
            message = data.get("message") if isinstance(data, dict) else None
            raise ServerRefused(
                status, message if isinstance(message, str) and message else f"HTTP {status}"
            )
        if not isinstance(data, dict):
            raise ServerRefused(status, "the server's answer is not a JSON object")
        return data

    def _request(
        self,
        origin: tuple[str, str, int],
        method: str,
        target: str,
        content: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, bytes]:
        conn = self._connection(origin)
        try:
            conn.request(method, target, body=content, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except BaseException:
            self.close()  # its state is unknown: the next call connects afresh
            raise
        if response.will_close:
            self.close()
        return response.status, raw

    def _connection(self, origin: tuple[str, str, int]) -> HTTPConnection:
        """The kept-alive connection to ``origin``, or a new one.

        A kept connection the server has closed meanwhile (a restart, an idle timeout) reads
        as ready, at EOF: it is replaced before sending, never retried after (a POST must not
        be sent twice).
        """
        conn = self._conn
        if conn is not None and (
            self._origin != origin or conn.sock is None or _readable(conn.sock)
        ):
            self.close()
            conn = None
        if conn is None:
            import http.client

            scheme, host, port = origin
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port or None, timeout=CONNECT_TIMEOUT, context=_tls_context()
                )
            else:
                conn = http.client.HTTPConnection(host, port or None, timeout=CONNECT_TIMEOUT)
            # No proxy is consulted (http.client knows none): a proxy set for the internet
            # must not see calls to our own server.
            try:
                conn.connect()
                conn.sock.settimeout(self.timeout)  # the connect timeout was for connecting only
            except BaseException:
                conn.close()
                raise
            self._conn, self._origin = conn, origin
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._origin = None


def _readable(sock: Any) -> bool:
    """Whether an idle kept-alive socket has something to read: EOF, most likely (as httpcore
    checks its pooled connections). ``poll`` has no limit on descriptor numbers; Windows has
    only ``select``."""
    poll = getattr(select, "poll", None)
    if poll is None:
        return bool(select.select([sock], [], [], 0)[0])
    poller = poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _tls_context() -> Any:
    """The trust httpx used: certifi's CA bundle when installed, else the system's."""
    import ssl

    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
