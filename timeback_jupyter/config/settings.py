"""Every knob in one traitlets Configurable (``c.Timeback.*``), and the credentials, which never
become traits: read from the environment under the names the official clients use, only ever
shown masked."""

from __future__ import annotations

import os
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
        return str(Path(jupyter_data_dir()) / "timeback" / "timeback.sqlite3")

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
    metadata_write_delay = Float(
        10.0,
        help="Seconds the server waits for a browser extension to write a new run into the "
        "notebook before it writes the notebook file itself.",
    ).tag(config=True)
    drain_interval = Float(2.0, help="Seconds between outbox checks when it is empty.").tag(
        config=True
    )

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
