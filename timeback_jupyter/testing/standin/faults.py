"""Scripted faults: how the next request to a path is answered instead of normally.

Most faults are the HTTP exchange's (a status, a hang, a slow answer, a dropped connection);
``job_fails`` and ``job_slow`` let the request be accepted as usual and script what then
happens to its job (:mod:`.jobs`).

:class:`~timeback_jupyter.testing.standin.StandIn` queues them (``script``) and hands the first
to a request whose path matches; the HTTP handler carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .paths import EVENT_PATH


@dataclass(frozen=True)
class Fault:
    """One scripted answer, consumed by the next request to ``path``."""

    kind: Literal["status", "hang", "slow", "close", "job"]
    status: int = 200
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    then: Literal["answer", "drop"] = "answer"
    path: str = EVENT_PATH
    keep: int = 0  # job faults: events a failing job stores before it fails

    @classmethod
    def rate_limited(cls, retry_after: float | None, path: str = EVENT_PATH) -> Fault:
        headers = () if retry_after is None else (("Retry-After", f"{retry_after:g}"),)
        body = {"message": "Too many requests"}
        return cls("status", 429, body, headers, path=path)

    @classmethod
    def error(cls, status: int = 500, message: str = "", path: str = EVENT_PATH) -> Fault:
        """Any status with a ``{"message": ...}`` body: 500, 503, 400 with a reason..."""
        return cls("status", status, {"message": message or f"stand-in says {status}"}, path=path)

    @classmethod
    def hang(
        cls, seconds: float, then: Literal["answer", "drop"] = "drop", path: str = EVENT_PATH
    ) -> Fault:
        """Say nothing for ``seconds``; then process and answer, or close without a word."""
        return cls("hang", seconds=seconds, then=then, path=path)

    @classmethod
    def slow(cls, seconds: float, path: str = EVENT_PATH) -> Fault:
        """Process the request (accept its job) at once, but answer only after ``seconds``."""
        return cls("slow", seconds=seconds, path=path)

    @classmethod
    def close(cls, path: str = EVENT_PATH) -> Fault:
        """Close the connection without answering, before processing anything."""
        return cls("close", path=path)

    @classmethod
    def job_fails(
        cls, reason: str = "processing failed", *, keep: int = 0, after: float = 0.0
    ) -> Fault:
        """Accept the next envelope, then fail its job after ``after`` seconds (0: the
        stand-in's ``job_delay``), having stored only its first ``keep`` events."""
        return cls("job", body=reason, seconds=after, keep=keep)

    @classmethod
    def job_slow(cls, seconds: float) -> Fault:
        """Accept the next envelope; its job completes only ``seconds`` later."""
        return cls("job", seconds=seconds)
