"""REST API under ``/timeback/api/`` (the table is in :mod:`.routes`).

Browser routes sit behind jupyter_server's auth (``@web.authenticated`` then ``@authorized``,
resource ``timeback``) and its XSRF check. Kernel routes are authenticated by a kernel token
(see :mod:`.bridge`) and act only on the run of the kernel's own notebook. None of them counts as
server activity (``_track_activity = False``), so heartbeats never keep an idle server alive.
Each handler parses its request (:mod:`.requests`), calls the service and answers what it says;
an error answers as every Jupyter API does: ``{"message": <why>, "reason": ...}``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from .binding import KernelBinding
from .bridge import KERNEL_HEADER, TOKEN_HEADER
from .requests import (
    COMPLETION_FIELDS,
    PRESENCE_FIELDS,
    call,
    completion_args,
    error_message,
    flag,
    notebook_path,
    presence_args,
    ready,
    request_body,
)
from .service import TimebackService


class BaseHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "timeback"
    _track_activity = False

    @property
    def service(self) -> TimebackService:
        return self.extensionapp.service  # type: ignore[no-any-return]

    def body(self, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
        return request_body(self.request.body, allowed)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        err = exc_info[1] if exc_info else None
        if not isinstance(err, web.HTTPError) or not err.log_message:
            return super().write_error(status_code, **kwargs)
        # APIHandler's own reply, with the message as it was said: APIHandler sends
        # log_message, in which tornado doubles every % (tornado has logged it already).
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": error_message(err), "reason": err.reason}))
        return None

    def answer(self, data: Any) -> None:
        self.finish(json.dumps(data))

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A service operation, once the caller may ask for it."""
        ready(self.service, self.current_user, writes=self.request.method != "GET")
        return await call(self.log, fn, *args, **kwargs)


class RunOperations(BaseHandler):
    """What browser and kernel routes both do once they know which run or notebook."""

    async def start(
        self, path: str, activity: Any, *, browser: bool = False, new_attempt: bool = False
    ) -> None:
        result = await self.call(
            self.service.start, path, activity=activity, browser=browser, new_attempt=new_attempt
        )
        if result is None:
            raise web.HTTPError(404, f"{path} declares no timeback activity: give one")
        self.answer(result)

    async def end(self, run_id: str) -> None:
        self.body(set())
        self.answer(await self.call(self.service.end, run_id))

    async def complete(self, run_id: str) -> None:
        data = self.body(COMPLETION_FIELDS)
        self.answer(await self.call(self.service.complete, run_id, **completion_args(data)))

    async def exercise(self, run_id: str) -> None:
        data = self.body({"exercise", "correct"})
        self.answer(
            await self.call(
                self.service.exercise, run_id, data.get("exercise"), data.get("correct")
            )
        )


class StatusHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """``?today_start=<POSIX seconds>`` (the browser's local midnight) adds ``today``,
        ``?run=<id>`` that run, both at the same instant."""
        raw = self.get_argument("today_start", None)
        today_start = None
        if raw is not None:
            try:
                today_start = float(raw)
            except ValueError:
                today_start = math.nan
            if not math.isfinite(today_start) or today_start < 0:
                raise web.HTTPError(400, "today_start: must be a time in POSIX seconds")
        run_id = self.get_argument("run", None)
        drainer = self.service.drainer  # the counts read on its store thread, not on the loop
        counts = None if drainer is None else await drainer.read_counts()
        self.answer(self.service.status(today_start=today_start, run_id=run_id, counts=counts))


class FlushHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Send the outbox now (bounded by ``timeout`` seconds) and say what happened."""
        data = self.body({"timeout"})
        timeout = data.get("timeout", 10)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 60
        ):
            raise web.HTTPError(400, "timeout: must be a number of seconds in (0, 60]")
        self.answer(await self.call(self.service.flush, float(timeout)))


class RunsHandler(RunOperations):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Start or resume the run of a notebook: ``{path, activity?, client?}``."""
        data = self.body({"path", "activity", "client"})
        client = data.get("client", "api")
        if client not in ("api", "jupyterlab"):
            raise web.HTTPError(400, "client: must be 'api' or 'jupyterlab'")
        await self.start(notebook_path(data), data.get("activity"), browser=client == "jupyterlab")


class RunHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        self.answer(await self.call(self.service.get, run_id))


class RunEndHandler(RunOperations):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.end(run_id)


class RunCompleteHandler(RunOperations):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.complete(run_id)


class RunExerciseHandler(RunOperations):
    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.exercise(run_id)


class PresenceHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """``{path, source, visible, focused, idle_ms, leaving?}`` from a browser tab; the
        tab's presence socket (:mod:`.presence_socket`) is the usual way, this its fallback."""
        data = self.body(PRESENCE_FIELDS | {"_xsrf"})
        self.answer({"run": await self.call(self.service.presence, **presence_args(data))})


# ---- kernel routes ---------------------------------------------------------------------------


class KernelHandler(RunOperations):
    """Authenticated by the kernel token; acts on the kernel's own notebook only."""

    kernel_id: str

    @property
    def binding(self) -> KernelBinding:
        return self.extensionapp.binding  # type: ignore[no-any-return]

    def check_xsrf_cookie(self) -> None:
        # No cookie is involved: a custom header cannot be forged cross-site without CORS.
        if self._kernel_ok():
            return None
        return super().check_xsrf_cookie()

    def _kernel_ok(self) -> bool:
        kid = self.request.headers.get(KERNEL_HEADER)
        return self.binding.tokens.verify(kid, self.request.headers.get(TOKEN_HEADER))

    def prepare(self) -> Any:
        if not self._kernel_ok():
            raise web.HTTPError(403, "a valid kernel token is required")
        self.kernel_id = self.request.headers[KERNEL_HEADER]
        return super().prepare()

    async def notebook(self) -> str:
        path = await self.binding.path_of_kernel(self.kernel_id)
        if path is None:
            raise web.HTTPError(404, "this kernel is not bound to a notebook")
        return path

    async def run_id(self) -> str:
        path = await self.notebook()
        return await self.call(self.service.run_of, path)  # type: ignore[no-any-return]


class KernelRunHandler(KernelHandler):
    @allow_unauthenticated
    async def get(self) -> None:
        self.answer(await self.service.describe_kernel_notebook(await self.notebook()))

    @allow_unauthenticated
    async def post(self) -> None:
        """Start or resume the kernel's notebook run: ``{activity?, new_attempt?}``."""
        data = self.body({"activity", "new_attempt"})
        new_attempt = flag(data, "new_attempt", False)
        await self.start(await self.notebook(), data.get("activity"), new_attempt=new_attempt)


class KernelEndHandler(KernelHandler):
    @allow_unauthenticated
    async def post(self) -> None:
        await self.end(await self.run_id())


class KernelCompleteHandler(KernelHandler):
    @allow_unauthenticated
    async def post(self) -> None:
        await self.complete(await self.run_id())


class KernelExerciseHandler(KernelHandler):
    @allow_unauthenticated
    async def post(self) -> None:
        await self.exercise(await self.run_id())
