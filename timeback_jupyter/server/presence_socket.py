"""Presence over one WebSocket per browser tab: ``/timeback/api/presence/socket``.

The same reports as ``POST /timeback/api/presence``, checked by the same code, answered with
the same ``run``. Why a socket: Jupyter's own cost of an authenticated HTTP request (auth,
tornado, logging, metrics) exceeds the presence budget at hundreds of open notebooks, while a
message on an open, authenticated socket costs a fraction of it. Jupyter needs WebSockets for
kernels, so wherever Jupyter works this does too; the browser falls back to REST otherwise.

Client -> server: ``{"id": <int>, "path", "source", "visible", "focused", "idle_ms",
"leaving"?}``. Server -> client: ``{"id", "run"}``, or an error as the REST routes answer it
plus the status they would answer with: ``{"id", "status", "message", "reason"}`` (``id`` null
when the message had none); a bad message gets its error and the socket stays open.
Unasked, ``{"refresh": path}`` when the run of a notebook the tab reported starts, ends,
completes or has an exercise marked (from the kernel, say): a notebook that is not in front
does not report, so this is how its tab learns that it should ask now.
Closing the socket (tab closed, crashed, network gone and the ping timing out) leaves every
notebook it reported, as a pagehide would. Like the REST routes, nothing here counts as server
activity: it is not an APIHandler, so Jupyter's ``api_last_activity`` never moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .requests import (
    MAX_BODY,
    PRESENCE_FIELDS,
    call,
    error_message,
    json_object,
    presence_args,
    ready,
    refuse_unknown,
)
from .service import TimebackService

MESSAGE_FIELDS = PRESENCE_FIELDS | {"id"}
# (path, source) pairs one socket remembers to leave on close, most recently reported last. A
# tab shows a few notebooks; past this the least recently reported is forgotten: its report
# lapses by itself within presence_ttl, so only the leave at close is lost, not time.
MAX_REPORTED = 64
# Leaves run after the socket is gone: held here so they are not collected before they run.
_leaving: set[asyncio.Task[Any]] = set()


class PresenceSockets:
    """The open presence sockets: told when a notebook they reported changes."""

    def __init__(self) -> None:
        self._open: set[PresenceSocketHandler] = set()

    def add(self, socket: PresenceSocketHandler) -> None:
        self._open.add(socket)

    def discard(self, socket: PresenceSocketHandler) -> None:
        self._open.discard(socket)

    def __len__(self) -> int:
        return len(self._open)

    def refresh(self, path: str) -> None:
        """The run of the notebook at ``path`` changed: tabs that reported it ask now."""
        for socket in self._open:
            socket.refresh(path)

    def renamed(self, old: str, new: str) -> None:
        for socket in self._open:
            socket.renamed(old, new)


class PresenceSocketHandler(  # type: ignore[misc]
    ExtensionHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler
):
    auth_resource = "timeback"
    # (path, source) pairs reported and not left, oldest first: what closing the socket leaves
    _reported: dict[tuple[str, str], None]

    @property
    def service(self) -> TimebackService:
        return self.extensionapp.service  # type: ignore[no-any-return]

    @property
    def sockets(self) -> PresenceSockets:
        return self.extensionapp.presence_sockets  # type: ignore[no-any-return]

    def set_default_headers(self) -> None:
        """JupyterHandler's headers (CSP...) mean nothing on a websocket, as for kernels."""

    @property
    def max_message_size(self) -> int:
        # tornado buffers up to 10 MiB before it looks; a report is a few hundred bytes. Up
        # to this a too-large message gets its 400 answer, beyond it the socket closes (1009).
        return 16 * MAX_BODY

    def get_compression_options(self) -> dict[str, Any] | None:
        return self.settings.get("websocket_compression_options", None)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Reporting presence writes, whatever the handshake's HTTP method says.
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "write", self.auth_resource)
        )
        if not allowed:
            raise web.HTTPError(403, f"not authorized to write on {self.auth_resource}")
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._reported = {}
        self.sockets.add(self)
        super().open(*args, **kwargs)  # WebSocketMixin: keep-alive pings, closed on timeout

    def refresh(self, path: str) -> None:
        """Tell the tab to report ``path`` now, if it reported that notebook and has not left."""
        if any(reported == path for reported, _ in self._reported):
            self._send({"refresh": path})

    def renamed(self, old: str, new: str) -> None:
        """A notebook this tab reported was renamed: refreshes and the leave on close follow it
        (the tab itself reports the new path from then on)."""
        self._reported = {
            (new if path == old else path, source): None for path, source in self._reported
        }

    async def on_message(self, message: str | bytes) -> None:
        # tornado hands over the next message only once this one is answered: reports of
        # one tab stay in order.
        msg_id: int | None = None
        try:
            size = len(message.encode()) if isinstance(message, str) else len(message)
            if size > MAX_BODY:
                raise web.HTTPError(400, f"message larger than {MAX_BODY} bytes")
            data = json_object(message, "message")
            msg_id = data.get("id")
            if isinstance(msg_id, bool) or not isinstance(msg_id, int):
                msg_id = None
                raise web.HTTPError(400, "id: required (an integer the answer repeats)")
            refuse_unknown(data, MESSAGE_FIELDS)
            args = presence_args(data)
            # the same checks as the REST route: not recording -> 503, a hub visitor -> 403
            ready(self.service, self.current_user, writes=True)
            run = await call(self.log, self.service.presence, **args)
        except web.HTTPError as err:
            self._send(_error(msg_id, err.status_code, error_message(err), err.reason))
            return
        except Exception:  # a bug must cost one answer, not the tab's socket
            self.log.exception("timeback: presence message failed")
            self._send(_error(msg_id, 500, "internal error: see the server log"))
            return
        pair = (args["path"], args["source"])
        self._reported.pop(pair, None)
        if not args["leaving"]:
            self._reported[pair] = None  # the most recent last
            if len(self._reported) > MAX_REPORTED:
                del self._reported[next(iter(self._reported))]
        self._send({"id": msg_id, "run": run})

    def on_close(self) -> None:
        self.sockets.discard(self)
        reported = list(getattr(self, "_reported", {}))
        if not reported:
            return
        self._reported = {}
        task = asyncio.ensure_future(self._leave_all(reported))
        _leaving.add(task)
        task.add_done_callback(_leaving.discard)

    async def _leave_all(self, reported: list[tuple[str, str]]) -> None:
        """What the tab's pagehide would have sent for each notebook it reported."""
        for path, source in reported:
            try:
                ready(self.service, self.current_user, writes=True)
                await call(
                    self.log,
                    self.service.presence,
                    path,
                    source,
                    visible=False,
                    focused=False,
                    idle_seconds=None,
                    leaving=True,
                )
            except web.HTTPError as err:  # ended meanwhile, not recording: nothing to leave
                self.log.debug("timeback: leave of %s on close: %s", path, error_message(err))
            except Exception:
                self.log.exception("timeback: leave of %s on close failed", path)

    def _send(self, answer: dict[str, Any]) -> None:
        # the tab may have gone meanwhile: on_close leaves for it
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(json.dumps(answer))


def _error(
    msg_id: int | None, status: int, message: str, reason: str | None = None
) -> dict[str, Any]:
    """An error answer: the fields of a REST error body, with its status and the message's id."""
    return {"id": msg_id, "status": status, "message": message, "reason": reason}
