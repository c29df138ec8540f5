"""Every knob in one traitlets Configurable (``c.Timeback.*``), and the credentials, which never
become traits: read from the environment under the names the official clients use, only ever
shown masked."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from ..xp import XpPolicy
from .common import ENVIRONMENTS, ONEROSTER_BASE_URLS


class Timeback(Configurable):
    """Configuration of timeback-jupyter (``c.Timeback.*``)."""

    sink = Enum(
        ["local", "timeback", "relay"],
        default_value="local",
        help="Where events go: 'local' keeps them validated in the store (no credentials "
        "needed); 'timeback' sends them to the Timeback Caliper API; 'relay' (on JupyterHub) "
        "sends them to the hub's relay service named by $TIMEBACK_RELAY_URL. Whenever "
        "$TIMEBACK_RELAY_URL is set the server is in hub mode and uses the relay, whatever "
        "this says.",
    ).tag(config=True)

    environment = Enum(
        list(ENVIRONMENTS),
        help="Timeback environment. Defaults to $TIMEBACK_ENV, else staging.",
    ).tag(config=True)

    @default("environment")
    def _default_environment(self) -> str:
        env = os.environ.get("TIMEBACK_ENV", "staging").strip().lower()
        # The official SDK maps 'local' to staging services; so do we.
        return "production" if env == "production" else "staging"

    base_url = Unicode(
        "", help="Caliper API base URL, overriding the environment's (tests, proxies)."
    ).tag(config=True)
    auth_url = Unicode("", help="OAuth2 token URL, overriding the environment's.").tag(config=True)
    oneroster_base_url = Unicode(
        "", help="OneRoster base URL for actor and course IRIs, overriding the environment's."
    ).tag(config=True)

    config_file = Unicode(
        "",
        help="Path of timeback.config.json (Timeback's app config). Empty: look in the "
        "server's root directory, then the current directory.",
    ).tag(config=True)
    sensor = Unicode("", help="Caliper sensor IRI, overriding timeback.config.json.").tag(
        config=True
    )
    app_name = Unicode("", help="App name sent as object.app.name (default: the config's).").tag(
        config=True
    )
    app_url = Unicode("", help="Launch URL of the app (the sensor derives from its origin).").tag(
        config=True
    )

    heartbeat_interval = Float(15.0, help="Seconds per heartbeat window.").tag(config=True)
    idle_after = Float(
        120.0, help="Seconds without input or a cell run after which time counts as inactive."
    ).tag(config=True)
    abandon_after = Float(
        600.0,
        help="Seconds without engagement after which a run stops heartbeating; it restarts "
        "from a clean slate on return.",
    ).tag(config=True)
    presence_ttl = Float(
        20.0,
        help="Seconds a browser's report that a notebook is visible and focused stays valid "
        "without a new one (the extension repeats it every 5 s; notebooks not in front "
        "report only their changes).",
    ).tag(config=True)

    running_cell_limit = Float(
        300.0,
        help="Seconds a running cell keeps its notebook's time active without any input from "
        "the student (typing, scrolling, a click, a new cell run, a widget); then the time is "
        "inactive until they touch something. Only while the notebook is in front; a kernel "
        "restart, death or interrupt ends the cell at once.",
    ).tag(config=True)

    store_path = Unicode(help="SQLite file holding runs, windows and the outbox.").tag(config=True)

    @default("store_path")
    def _default_store_path(self) -> str:
        # A hub user's named servers share one home: each keeps its own store (one store, one
        # owner), and the relay holds the truth across them (no time counted twice).
        server = re.sub(r"[^\w.-]", "_", os.environ.get("JUPYTERHUB_SERVER_NAME", "").strip())
        name = f"timeback-{server}.sqlite3" if server else "timeback.sqlite3"
        return str(Path(jupyter_data_dir()) / "timeback" / name)

    student_email = Unicode(
        "", help="The student's email. Default: $TIMEBACK_STUDENT_EMAIL, else from the hub user."
    ).tag(config=True)
    student_email_template = Unicode(
        "", help="Email built from the JupyterHub user name, e.g. '{username}@school.edu'."
    ).tag(config=True)
    student_id = Unicode(
        "", help="The student's OneRoster sourcedId, skipping the lookup by email."
    ).tag(config=True)
    count_visitors = Bool(
        False, help="Count time for visitors of a JupyterHub server, not only its owner."
    ).tag(config=True)

    batch_size = Int(50, help="Events per Caliper envelope.").tag(config=True)
    retry_initial = Float(1.0, help="First retry delay in seconds (doubles, with jitter).").tag(
        config=True
    )
    retry_max = Float(300.0, help="Longest retry delay in seconds.").tag(config=True)
    request_timeout = Float(30.0, help="Seconds before a send to Timeback is abandoned.").tag(
        config=True
    )
    # Delivered means Timeback's job for the events completed (timeback_jupyter/delivery).
    job_timeout = Float(
        300.0,
        help="Seconds within which Timeback stores a request's events, counted from the send "
        "(a stalled request plus its queued job). After a send whose outcome is unknown, events "
        "not found upstream are sent again only after this: Timeback does not deduplicate.",
    ).tag(config=True)
    job_failures_max = Int(
        5, help="Failed Timeback jobs an event may be lost by before it is dead-lettered."
    ).tag(config=True)
    metadata_write_delay = Float(
        10.0,
        help="Seconds the server waits for a browser extension to write a new run into the "
        "notebook before it writes the notebook file itself.",
    ).tag(config=True)
    drain_interval = Float(2.0, help="Seconds between outbox checks when it is empty.").tag(
        config=True
    )

    retention_days = Float(
        30.0,
        help="Days a heartbeat event (TimeSpentEvent) is kept in the store after Timeback "
        "confirmed it; then it is deleted, a small batch at a time on a thread of the store. "
        "Runs, windows and completions (what `jupyter timeback report` shows) and "
        "completion events are kept for ever; events not yet confirmed and dead letters are "
        "never pruned. 0 keeps every event.",
    ).tag(config=True)
    checkpoint_interval = Float(
        2.0,
        help="Seconds between two writes of each live run's open window to the store: a "
        "server killed without closing its windows (kill -9, power cut of the container) "
        "loses at most about this much of the time they held; the next server records the "
        "rest. 0.5 to 3600; each checkpoint costs about a millisecond of CPU per 500 live "
        "runs (BENCHMARKS.md).",
    ).tag(config=True)

    @validate("retention_days")
    def _validate_retention_days(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value >= 0:
            raise TraitError(f"c.Timeback.retention_days must be 0 (keep) or more, got {value}")
        return value

    @validate("checkpoint_interval")
    def _validate_checkpoint_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.5 <= value <= 3600:
            raise TraitError(
                f"c.Timeback.checkpoint_interval must be 0.5 to 3600 seconds, got {value}"
            )
        return value

    # Timeback's XP system (timeback_jupyter/xp.py): what a mastered run earns beyond or below
    # the activity's expected XP.
    xp_perfect_bonus = Float(
        0.25,
        help="Share of the expected XP added for every question right on the first attempt "
        "(0 to 1; 0.25 is the 1.25x of Playcademy's Timeback guide).",
    ).tag(config=True)
    xp_wasteful_after = Float(
        3.0,
        help="A mastered run is wasteful when its focused minutes exceed this many times the "
        "activity's expected XP (at least 1).",
    ).tag(config=True)
    xp_wasteful_share = Float(
        0.5, help="Share of the expected XP a wasteful mastered run earns (0 to 1)."
    ).tag(config=True)

    @validate("xp_perfect_bonus", "xp_wasteful_share")
    def _validate_share(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 1:
            raise TraitError(f"c.Timeback.{proposal['trait'].name} must be 0 to 1, got {value}")
        return value

    @validate("xp_wasteful_after")
    def _validate_wasteful_after(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value >= 1:
            raise TraitError(f"c.Timeback.xp_wasteful_after must be at least 1, got {value}")
        return value

    @property
    def xp_policy(self) -> XpPolicy:
        return XpPolicy(self.xp_perfect_bonus, self.xp_wasteful_after, self.xp_wasteful_share)

    @property
    def oneroster_url(self) -> str:
        """The OneRoster base URL actor and course IRIs are built from: ``oneroster_base_url``,
        else the environment's."""
        return self.oneroster_base_url or ONEROSTER_BASE_URLS[self.environment]


@dataclass(frozen=True)
class Credentials:
    """OAuth2 client credentials. ``repr`` and ``str`` never show the secret."""

    client_id: str
    client_secret: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials | None:
        env = os.environ if environ is None else environ
        cid = env.get("TIMEBACK_API_CLIENT_ID") or env.get("TIMEBACK_CLIENT_ID") or ""
        secret = env.get("TIMEBACK_API_CLIENT_SECRET") or env.get("TIMEBACK_CLIENT_SECRET") or ""
        if not cid or not secret:
            return None
        return cls(cid, secret)

    @property
    def masked(self) -> str:
        return f"{self.client_id[:4]}… (secret set)"

    def __str__(self) -> str:
        return self.masked
