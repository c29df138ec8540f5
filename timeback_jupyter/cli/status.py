"""``jupyter timeback status``: the configuration in effect, who, where, and the outbox."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import ConfigError, Timeback
from ..identity import IdentityError
from ..store import StoreError
from .base import EXIT_USAGE, CLIError, Command
from .servers import server_for_store

# Traits whose value may carry a password in a URL's userinfo.
_URL_TRAITS = {"base_url", "auth_url", "oneroster_base_url", "app_url", "sensor"}


def mask_url(url: str) -> str:
    """``https://user:***@host/`` for a URL with a password; anything else as is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def settings_lines(cfg: Timeback) -> list[str]:
    """Every ``c.Timeback`` knob with its value; ``*`` marks those set by config or option."""
    explicit = set(cfg.config.get("Timeback", {}))
    lines = []
    for name in sorted(cfg.trait_names(config=True)):
        value = getattr(cfg, name)
        if name in _URL_TRAITS and isinstance(value, str):
            value = mask_url(value)
        mark = "*" if name in explicit else " "
        lines.append(f"  {mark} {name} = {value!r}")
    return lines


def _age(seconds: float | None, what: str = "queued") -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f", oldest {what} {seconds:.0f} s ago"
    if seconds < 7200:
        return f", oldest {what} {seconds / 60:.0f} min ago"
    return f", oldest {what} {seconds / 3600:.1f} h ago"


class StatusCommand(Command):
    """The configuration in effect (secrets masked), identity, sink, outbox, jobs, dead letters."""

    name = "jupyter-timeback-status"
    verb = "status"
    description = (
        "Show the configuration the Jupyter server uses (secrets masked), the student, the "
        "sink, the outbox depth, Timeback's jobs (pending, failed, confirmed) and the dead "
        "letters. Exits non-zero if part of it is broken."
    )
    examples = """
    jupyter timeback status
    jupyter timeback status --Timeback.store_path=/srv/timeback.sqlite3
    """

    def run(self) -> int:
        if self.extra_args:
            raise CLIError(f"unexpected argument {self.extra_args[0]!r}", EXIT_USAGE)
        cfg = self.settings
        problems = 0
        out: list[str] = []

        def field(label: str, value: str) -> None:
            out.append(f"{label + ':':<15} {value}")

        def broken(label: str, why: str) -> None:
            nonlocal problems
            problems += 1
            field(label, f"\u2717 {why}")

        files = self.loaded_config_files
        field("config files", ", ".join(files) if files else "none (defaults and options only)")
        field("sink", f"{cfg.sink} ({cfg.environment})")
        if cfg.sink == "timeback":
            field("caliper api", mask_url(cfg.base_url) or f"Timeback {cfg.environment}")
        credentials = self.credentials()
        if credentials is not None:
            field("credentials", credentials.masked)
        elif cfg.sink == "timeback":
            broken("credentials", "none: set TIMEBACK_CLIENT_ID and TIMEBACK_CLIENT_SECRET")
        else:
            field("credentials", "none (not needed: the local sink sends nothing)")
        try:
            app = self.app_config()
            where = app.path or "built-in default (no timeback.config.json found)"
            courses = len(app.courses)
            field(
                "app config", f"{where}; app {app.name!r}, {courses} course{'s' * (courses != 1)}"
            )
        except ConfigError as err:
            broken("app config", str(err))
        try:
            student = self.student()
            sourced = student.sourced_id or (
                "placeholder (local sink)" if cfg.sink == "local" else "looked up by email"
            )
            field("student", f"{student.email} (key {student.key}, sourcedId {sourced})")
        except IdentityError as err:
            broken("student", str(err))

        path = self.store_path
        if not path.exists():
            field("store", f"{path} (not created yet: nothing recorded)")
        else:
            try:
                with self.open_store() as store:
                    stats = store.stats()
                    jobs = store.job_stats()
                    dead = store.dead_letters()
            except (StoreError, CLIError) as err:
                broken("store", str(err))
            else:
                field("store", f"{path} ({stats['runs']} run{'s' * (stats['runs'] != 1)})")
                field(
                    "outbox",
                    f"{stats['pending'] + stats['inflight']} queued ({stats['pending']} pending, "
                    f"{stats['inflight']} in flight), {stats['sent']} sent"
                    + _age(stats.get("oldest_pending_age")),
                )
                # Delivered means Timeback's job for the events completed (delivery/__init__).
                field(
                    "jobs",
                    f"{jobs['pending']} pending ({jobs['events_awaiting']} events awaiting), "
                    f"{jobs['failed']} failed, {jobs['confirmed']} confirmed"
                    + _age(jobs["oldest_pending_age"], "pending"),
                )
                field("dead letters", str(len(dead)))
                for letter in dead[-10:]:
                    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(letter.at))
                    out.append(f"  - {when} {letter.kind} {letter.event_id}: {letter.reason}")
                if len(dead) > 10:
                    out.append(f"  ({len(dead) - 10} older not shown; `jupyter timeback export`)")
        server = server_for_store(str(path), self.runtime_dir)
        if server is None:
            field("server", "no running Jupyter server records into this store")
        else:
            field("server", self._server_line(server.url, server.pid, server.status))
        out.append("settings (* = set by config or option):")
        out.extend(settings_lines(cfg))
        print("\n".join(out))
        return 1 if problems else 0

    @staticmethod
    def _server_line(url: str, pid: int, status: dict[str, Any]) -> str:
        delivery = status.get("delivery") or {}
        state = (
            "recording" if status.get("recording") else f"not recording: {status.get('problem')}"
        )
        text = f"{url} (pid {pid}), {state}; delivery {delivery.get('state', 'not running')}"
        jobs = delivery.get("jobs") or {}
        if jobs.get("pending"):
            text += f", {jobs['pending']} job(s) pending at Timeback"
        if delivery.get("last_error"):
            text += f" (last error: {delivery['last_error']})"
        return text
