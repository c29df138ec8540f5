"""REST API under ``/timeback/api/``.

Browser routes sit behind jupyter_server's auth (``@web.authenticated`` then ``@authorized``,
resource ``timeback``) and its XSRF check. Kernel routes are authenticated by a kernel token
(see :mod:`.bridge`) and act only on the run of the kernel's own notebook. None of them counts as
server activity (``_track_activity = False``), so heartbeats never keep an idle server alive.
The browser reports presence over a WebSocket (:mod:`.presence_socket`, checked by the same
functions below); ``POST presence`` is its fallback where the socket cannot open.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from ..model import Activity, InvalidInput, finite
from ..tracker import TrackerError
from .bridge import KERNEL_HEADER, TOKEN_HEADER

if TYPE_CHECKING:
    from .app import TimebackApp

MAX_BODY = 64 * 1024
_RUN = r"[^/]+"  # validated by the handler, so a bad id gets a 400 that says why


class BaseHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "timeback"
    _track_activity = False

    @property
    def app(self) -> TimebackApp:
        return self.extensionapp  # type: ignore[return-value]

    def body(self, allowed: set[str]) -> dict[str, Any]:
        if len(self.request.body or b"") > MAX_BODY:
            raise web.HTTPError(413, f"request body larger than {MAX_BODY} bytes")
        if not self.request.body:
            return {}
        data = json_object(self.request.body, "request body")
        refuse_unknown(data, allowed)
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # One JSON shape for every error, with the specific reason as the message.
        reason = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info:
            err = exc_info[1]
            if isinstance(err, web.HTTPError) and err.log_message:
                reason = error_message(err)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason, "status": status_code}))

    def answer(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def ready(self) -> None:
        ready(self.app, self.current_user, writes=self.request.method != "GET")

    async def guarded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a tracker call and turn its refusals into HTTP answers."""
        self.ready()
        return await guarded_call(self.app, self.log, fn, *args, **kwargs)


def ready(app: TimebackApp, user: Any, *, writes: bool) -> None:
    """Refuse (HTTPError) a call while nothing records, or a visitor's write on JupyterHub."""
    problem = app.problem
    if problem:
        raise web.HTTPError(503, f"timeback is not recording: {problem}")
    owner = os.environ.get("JUPYTERHUB_USER")
    # On JupyterHub an admin or a shared-server guest may visit: their time is not the
    # student's. Kernel routes have no browser user and belong to the owner's kernels.
    if (
        owner
        and user is not None
        and writes
        and getattr(user, "username", None) != owner
        and not app.timeback.count_visitors
    ):
        raise web.HTTPError(
            403, f"only {owner}'s own visits are recorded (c.Timeback.count_visitors is off)"
        )


async def guarded_call(app: TimebackApp, log: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a tracker call and turn its refusals into HTTPErrors (whatever the transport)."""
    try:
        result = fn(*args, **kwargs)
        if hasattr(result, "__await__"):
            result = await result
        return result
    except TrackerError as err:
        raise web.HTTPError(err.status, str(err)) from None
    except InvalidInput as err:
        raise web.HTTPError(400, str(err)) from None
    except app.store_error_types as err:
        log.error("timeback store failure: %s", err)
        raise web.HTTPError(503, f"the timeback store failed: {err}") from None


def error_message(err: web.HTTPError) -> str:
    # tornado doubles every % of an argument-less message: formatting undoes it
    return err.log_message % err.args if err.log_message else (err.reason or "error")


def json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPError(400, f"{what} is not valid JSON") from None
    except RecursionError:  # a few kB of [[[[ exhaust the parser: the sender's error, not ours
        raise web.HTTPError(400, f"{what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise web.HTTPError(400, f"{what} must be a JSON object")
    return data


def refuse_unknown(data: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise web.HTTPError(400, f"unknown field(s): {', '.join(map(repr, unknown))}")


def _flag(data: dict[str, Any], key: str, default: bool | None = None) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise web.HTTPError(400, f"{key}: must be true or false")
    return value


def _path(data: dict[str, Any]) -> str:
    path = data.get("path")
    if not isinstance(path, str) or not path.strip() or len(path) > 4096:
        raise web.HTTPError(400, "path: required (the notebook's path)")
    return path.strip().lstrip("/")


def _completion_args(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "xp_earned": data.get("xp"),
        "total_questions": data.get("total"),
        "correct_questions": data.get("correct"),
        "mastered_units": data.get("mastered"),
        "pct_complete": data.get("pct"),
    }


COMPLETION_FIELDS = {"xp", "total", "correct", "mastered", "pct"}


class RunOperations(BaseHandler):
    """What browser and kernel routes both do once they know which run or notebook."""

    async def start(
        self, path: str, activity_data: Any, *, browser: bool = False, new_attempt: bool = False
    ) -> None:
        activity = None
        if activity_data is not None:
            try:
                activity = Activity.from_dict(activity_data)
            except InvalidInput as err:
                raise web.HTTPError(400, str(err)) from None
        result = await self.guarded(
            self.app.start_notebook,
            path,
            activity=activity,
            browser=browser,
            new_attempt=new_attempt,
        )
        if result is None:
            raise web.HTTPError(404, f"{path} declares no timeback activity: give one")
        self.answer(result)

    async def end(self, run_id: str) -> None:
        self.body(set())
        run = await self.guarded(self.app.tracker.end, run_id)
        self.answer({"run": self.app.tracker.describe(run)})

    async def complete(self, run_id: str) -> None:
        data = self.body(COMPLETION_FIELDS)
        result = await self.guarded(self.app.tracker.complete, run_id, **_completion_args(data))
        self.answer(self.app.completion_answer(result))

    async def exercise(self, run_id: str) -> None:
        data = self.body({"exercise", "correct"})
        run = await self.guarded(
            self.app.tracker.exercise, run_id, data.get("exercise"), data.get("correct")
        )
        self.answer({"run": self.app.tracker.describe(run)})


class StatusHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """``?today_start=<POSIX seconds>`` (the browser's local midnight) adds ``today``."""
        raw = self.get_argument("today_start", None)
        today_start = None
        if raw is not None:
            try:
                today_start = float(raw)
            except ValueError:
                today_start = math.nan
            if not math.isfinite(today_start) or today_start < 0:
                raise web.HTTPError(400, "today_start: must be a time in POSIX seconds")
        self.answer(self.app.status(today_start=today_start))


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
        report = await self.guarded(self.app.flush, float(timeout))
        self.answer(report)


class RunsHandler(RunOperations):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Start or resume the run of a notebook: ``{path, activity?, client?}``."""
        data = self.body({"path", "activity", "client"})
        client = data.get("client", "api")
        if client not in ("api", "jupyterlab"):
            raise web.HTTPError(400, "client: must be 'api' or 'jupyterlab'")
        await self.start(_path(data), data.get("activity"), browser=client == "jupyterlab")


class RunHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        run = await self.guarded(self.app.tracker.get, run_id)
        self.answer({"run": self.app.tracker.describe(run)})


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


PRESENCE_FIELDS = frozenset({"path", "source", "visible", "focused", "idle_ms", "leaving"})


def presence_args(data: dict[str, Any]) -> dict[str, Any]:
    """``TimebackApp.presence``'s arguments from a report, over REST or the presence socket."""
    path = _path(data)
    source = data.get("source")
    if not isinstance(source, str) or not source.strip() or len(source) > 200:
        raise web.HTTPError(400, "source: required (the tab's id)")
    source = source.strip()  # as the clock keeps it: " tab" and "tab" are one tab
    leaving = _flag(data, "leaving", False)
    visible = _flag(data, "visible", False if leaving else None)
    focused = _flag(data, "focused", False if leaving else None)
    idle_ms = data.get("idle_ms")
    if idle_ms is not None and (
        isinstance(idle_ms, bool)
        or not isinstance(idle_ms, int | float)
        or not finite(idle_ms)
        or idle_ms < 0
    ):
        raise web.HTTPError(400, "idle_ms: must be a non-negative number")
    return {
        "path": path,
        "source": source,
        "visible": visible,
        "focused": focused,
        "idle_seconds": None if idle_ms is None else idle_ms / 1000.0,
        "leaving": leaving,
    }


class PresenceHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        """``{path, source, visible, focused, idle_ms, leaving?}`` from a browser tab."""
        data = self.body(PRESENCE_FIELDS | {"_xsrf"})
        run = await self.guarded(self.app.presence, **presence_args(data))
        self.answer({"run": run})


# ---- kernel routes ---------------------------------------------------------------------------


class KernelHandler(RunOperations):
    """Authenticated by the kernel token; acts on the kernel's own notebook only."""

    kernel_id: str

    def check_xsrf_cookie(self) -> None:
        # No cookie is involved: a custom header cannot be forged cross-site without CORS.
        if self._kernel_ok():
            return None
        return super().check_xsrf_cookie()

    def _kernel_ok(self) -> bool:
        kid = self.request.headers.get(KERNEL_HEADER)
        return self.app.tokens.verify(kid, self.request.headers.get(TOKEN_HEADER))

    def prepare(self) -> Any:
        if not self._kernel_ok():
            raise web.HTTPError(403, "a valid kernel token is required")
        self.kernel_id = self.request.headers[KERNEL_HEADER]
        return super().prepare()

    async def notebook(self) -> str:
        path = await self.app.path_of_kernel(self.kernel_id)
        if path is None:
            raise web.HTTPError(404, "this kernel is not bound to a notebook")
        return path

    async def run_id(self) -> str:
        path = await self.notebook()
        run_id = self.app.tracker.run_at(path) or self.app.tracker.closed_at(path)
        if run_id is None:
            raise web.HTTPError(409, f"no run is open for {path}: start one first")
        return run_id


class KernelRunHandler(KernelHandler):
    @allow_unauthenticated
    async def get(self) -> None:
        path = await self.notebook()
        # after an end or a completion the notebook shows that run until it starts again
        run_id = self.app.tracker.run_at(path) or self.app.tracker.closed_at(path)
        run = None if run_id is None else self.app.tracker.describe(self.app.tracker.get(run_id))
        self.answer({"path": path, "run": run, "status": self.app.status(public=True)})

    @allow_unauthenticated
    async def post(self) -> None:
        """Start or resume the kernel's notebook run: ``{activity?, new_attempt?}``."""
        data = self.body({"activity", "new_attempt"})
        new_attempt = _flag(data, "new_attempt", False)
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


def routes() -> list[tuple[str, type]]:
    # imported here: the socket handler builds on this module's checks and parsing
    from .presence_socket import PresenceSocketHandler

    api = r"/timeback/api"
    return [
        (rf"{api}/status", StatusHandler),
        (rf"{api}/flush", FlushHandler),
        (rf"{api}/runs", RunsHandler),
        (rf"{api}/runs/({_RUN})", RunHandler),
        (rf"{api}/runs/({_RUN})/end", RunEndHandler),
        (rf"{api}/runs/({_RUN})/complete", RunCompleteHandler),
        (rf"{api}/runs/({_RUN})/exercises", RunExerciseHandler),
        (rf"{api}/presence", PresenceHandler),
        (rf"{api}/presence/socket", PresenceSocketHandler),
        (rf"{api}/kernel/run", KernelRunHandler),
        (rf"{api}/kernel/end", KernelEndHandler),
        (rf"{api}/kernel/complete", KernelCompleteHandler),
        (rf"{api}/kernel/exercises", KernelExerciseHandler),
    ]
