"""What every route checks of a request, over REST or the presence socket: parsing, limits,
who may write, and the service's refusals as HTTP errors. Each failure is a
``tornado.web.HTTPError`` whose message says which field is wrong and why."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Awaitable, Callable
from typing import Any

from tornado import web

from ..model import finite
from .errors import ServiceError, StoreFailure
from .service import TimebackService

MAX_BODY = 64 * 1024
PRESENCE_FIELDS = frozenset({"path", "source", "visible", "focused", "idle_ms", "leaving"})
# "require" and "min_active_minutes" are the completion button's rule, checked again here.
COMPLETION_FIELDS = frozenset(
    {"xp", "total", "correct", "mastered", "pct", "require", "min_active_minutes"}
)


def ready(service: TimebackService, user: Any, *, writes: bool) -> None:
    """Refuse (HTTPError) a call while nothing records, or a visitor's write on JupyterHub."""
    try:
        service.check_recording()
    except ServiceError as err:
        raise http_error(err) from None
    owner = os.environ.get("JUPYTERHUB_USER")
    # On JupyterHub an admin or a shared-server guest may visit: their time is not the
    # student's. Kernel routes have no browser user and belong to the owner's kernels.
    if (
        owner
        and user is not None
        and writes
        and getattr(user, "username", None) != owner
        and not service.settings.count_visitors
    ):
        raise web.HTTPError(
            403, f"only {owner}'s own visits are recorded (c.Timeback.count_visitors is off)"
        )


def http_error(err: ServiceError) -> web.HTTPError:
    return web.HTTPError(err.status, str(err))


async def call[T](log: Any, fn: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Call a service operation; its refusal becomes the HTTPError to answer."""
    try:
        result = fn(*args, **kwargs)
        if isinstance(result, Awaitable):
            return await result
        return result
    except ServiceError as err:
        if isinstance(err, StoreFailure):
            log.error("timeback: %s", err)
        raise http_error(err) from None


def error_message(err: web.HTTPError) -> str:
    """The specific message of ``err``, else its reason phrase."""
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


def request_body(raw: bytes | None, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
    """A request's JSON object body ({} when empty), with only ``allowed`` fields."""
    if len(raw or b"") > MAX_BODY:
        raise web.HTTPError(413, f"request body larger than {MAX_BODY} bytes")
    if not raw:
        return {}
    data = json_object(raw, "request body")
    refuse_unknown(data, allowed)
    return data


def refuse_unknown(data: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise web.HTTPError(400, f"unknown field(s): {', '.join(map(repr, unknown))}")


def flag(data: dict[str, Any], key: str, default: bool | None = None) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise web.HTTPError(400, f"{key}: must be true or false")
    return value


def normal_path(raw: str) -> str | None:
    """A notebook's path as one spelling, wherever it comes from (REST, the presence socket,
    kernel sessions, rename events): ``./a.ipynb``, ``sub/../a.ipynb`` and ``/a.ipynb`` are
    all ``a.ipynb``, one notebook and so one run. None if empty or outside the server's root."""
    path = raw.strip().lstrip("/")
    if not path:
        return None
    path = posixpath.normpath(path)
    if path in (".", "..") or path.startswith("../"):
        return None
    return path


def notebook_path(data: dict[str, Any]) -> str:
    path = data.get("path")
    if not isinstance(path, str) or not path.strip() or len(path) > 4096:
        raise web.HTTPError(400, "path: required (the notebook's path)")
    normal = normal_path(path)
    if normal is None:
        raise web.HTTPError(400, f"path: must name a notebook inside the server's root: {path!r}")
    return normal


def completion_args(data: dict[str, Any]) -> dict[str, Any]:
    """``TimebackService.complete``'s arguments from a body of COMPLETION_FIELDS."""
    return {
        "xp_earned": data.get("xp"),
        "total_questions": data.get("total"),
        "correct_questions": data.get("correct"),
        "mastered_units": data.get("mastered"),
        "pct_complete": data.get("pct"),
        "require": data.get("require"),
        "min_active_minutes": data.get("min_active_minutes"),
    }


def presence_args(data: dict[str, Any]) -> dict[str, Any]:
    """``TimebackService.presence``'s arguments from a report, over REST or the socket."""
    path = notebook_path(data)
    source = data.get("source")
    if not isinstance(source, str) or not source.strip() or len(source) > 200:
        raise web.HTTPError(400, "source: required (the tab's id)")
    source = source.strip()  # as the clock keeps it: " tab" and "tab" are one tab
    leaving = flag(data, "leaving", False)
    visible = flag(data, "visible", False if leaving else None)
    focused = flag(data, "focused", False if leaving else None)
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
