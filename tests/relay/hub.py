"""A real JupyterHub (dummy authenticator, configurable-http-proxy from npm) with the relay as an
external service (``url`` + ``api_token``), started by the test as ``jupyter timeback relay``,
and the stand-in Timeback behind it. No single-user server is spawned here: tokens are made
through the hub's REST API with an admin service's token, as a server's would be.

Its fixtures are bound into the test modules that use them (``hub = hub_fixtures.hub``...):
``tests/relay/conftest.py`` is the relay core's, with a ``relay`` fixture of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from timeback_jupyter import caliper
from timeback_jupyter.testing.standin import SENSOR, StandIn

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHP_DIR = REPO / ".cache" / "chp"
CHP_BIN = CHP_DIR / "node_modules" / ".bin"
SERVICE = "timeback-relay"
SCOPE = f"access:services!service={SERVICE}"
PREFIX = f"/services/{SERVICE}/"
# Secrets the tests look for wherever they must not be (logs, answers).
RELAY_HUB_TOKEN = "relay-service-token-never-logged-0001"
ADMIN_TOKEN = "test-admin-service-token-0002"
CLIENT_ID, CLIENT_SECRET = "relay-client", "relay-client-secret-never-logged"
STUDENTS = {"ada": "sourced-ada", "bob": "sourced-bob"}
CATALOG = {
    "name": "Notebook Academy",
    "sensor": SENSOR,
    "courses": [
        {
            "subject": "Math",
            "grade": 3,
            "ids": {"staging": "math-3-stg"},
            "activities": [{"id": "fractions-1", "name": "Fractions 1", "xp": 10}],
        }
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_chp() -> Path:
    """configurable-http-proxy from npm, installed once into the checkout's .cache."""
    if not (CHP_BIN / "configurable-http-proxy").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install configurable-http-proxy for the hub tests"
        subprocess.run(
            [npm, "install", "--prefix", str(CHP_DIR), "configurable-http-proxy@5"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return CHP_BIN


def wait_until(check, what: str, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as err:
            value, last = None, err
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class Hub:
    """A JupyterHub process; ``relay_port`` is where it expects the relay service."""

    def __init__(self, tmp: Path, relay_port: int) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.relay_port = relay_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"http://127.0.0.1:{self.hub_port}/hub/api"
        self.relay_url = f"{self.url}{PREFIX}"
        (tmp / "jupyterhub_config.py").write_text(
            f"""
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"principal"}}
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {str(tmp / "proxy.pid")!r}
c.JupyterHub.db_url = "sqlite:///{tmp / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(tmp / "cookie_secret")!r}
c.JupyterHub.services = [
    {{"name": {SERVICE!r}, "url": "http://127.0.0.1:{relay_port}",
      "api_token": {RELAY_HUB_TOKEN!r}}},
    {{"name": "test-admin", "api_token": {ADMIN_TOKEN!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "test-admin", "services": ["test-admin"],
      "scopes": ["admin:users", "tokens", "list:users", {SCOPE!r}]}},
]
# What the docs tell a hub admin (JupyterHub 6): every user may call the relay.
c.JupyterHub.extra_user_scopes = {{{SCOPE!r}}}
"""
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the hub (the relay first: the hub waits for an external service's URL)."""
        env = {
            **os.environ,
            "PATH": f"{ensure_chp()}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.log_path = self.tmp / "jupyterhub.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(self.tmp / "jupyterhub_config.py")],
            cwd=self.tmp,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.admin = httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"token {ADMIN_TOKEN}"}, timeout=30
        )
        try:
            wait_until(
                lambda: (
                    self.proc.poll() is None
                    and httpx.get(f"{self.url}/hub/api/", timeout=5).status_code == 200
                ),
                "the hub",
                timeout=90,
            )
        except AssertionError:
            self.stop()
            log = self.log_path.read_text()[-4000:]
            raise AssertionError("the hub did not start:\n" + log) from None

    def create_user(self, name: str) -> None:
        response = self.admin.post(f"/users/{name}")
        assert response.status_code in (201, 409), response.text

    def token(self, name: str, scopes: list[str]) -> str:
        """A new API token of user ``name`` with exactly ``scopes``."""
        response = self.admin.post(
            f"/users/{name}/tokens", json={"scopes": scopes, "note": "relay test"}
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def send(self, token: str, events: list[dict]) -> httpx.Response:
        """Post ``events`` to the relay through the hub's proxy as a student's server does."""
        return httpx.post(
            f"{self.relay_url}api/events",
            json=caliper.envelope(events, SENSOR, time.time()),
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.admin.close()
            self._log.close()


class RelayProcess:
    """``jupyter timeback relay`` as the hub's external service, delivering to ``standin``."""

    def __init__(
        self, tmp: Path, hub: Hub, standin: StandIn, *args: str, port: int | None = None
    ) -> None:
        """``port``: where it listens; default the hub's relay port (another: a replica the
        hub does not route to, reached directly)."""
        self.tmp, self.hub, self.standin = tmp, hub, standin
        self.port = port or hub.relay_port
        tmp.mkdir(parents=True, exist_ok=True)
        self.catalog = tmp / "timeback.config.json"
        self.catalog.write_text(json.dumps(CATALOG))
        self.db_url = f"sqlite:///{tmp / 'relay.sqlite3'}"
        self.args = args
        self.log_path = tmp / "relay.log"
        self.proc: subprocess.Popen | None = None
        self.extra_env: dict[str, str] = {}

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def start(self, *, via_hub: bool = True) -> None:
        """Start the relay and wait until it answers (through the hub's proxy, or directly
        while the hub is not up yet)."""
        mine = ("TIMEBACK_", "JUPYTERHUB_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
        env.update(
            TIMEBACK_CLIENT_ID=CLIENT_ID,
            TIMEBACK_CLIENT_SECRET=CLIENT_SECRET,
            JUPYTERHUB_API_TOKEN=RELAY_HUB_TOKEN,
            JUPYTERHUB_API_URL=self.hub.api_url,
            JUPYTERHUB_SERVICE_NAME=SERVICE,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{self.port}",
            JUPYTERHUB_SERVICE_PREFIX=PREFIX,
            JUPYTER_CONFIG_DIR=str(self.tmp / "config"),
            **self.extra_env,
        )
        command = [
            str(BIN / "jupyter"), "timeback", "relay",
            f"--Relay.catalog={self.catalog}",
            "--Relay.email_template={name}@school.edu",
            f"--Relay.db_url={self.db_url}",
            "--Relay.sink=timeback",
            f"--Timeback.base_url={self.standin.url}",
            f"--Timeback.auth_url={self.standin.token_url}",
            f"--Timeback.oneroster_base_url={self.standin.url}",
            "--Timeback.retry_initial=0.05",
            "--Timeback.retry_max=0.5",
            "--Timeback.drain_interval=0.1",
            *self.args,
        ]  # fmt: skip
        log = open(self.log_path, "a")  # noqa: SIM115  (the child holds it; closed below)
        self.proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        base = self.hub.relay_url if via_hub else self.direct_url
        try:
            wait_until(
                lambda: (
                    self.proc.poll() is None
                    and httpx.get(f"{base}api/health", timeout=5).status_code == 200
                ),
                "the relay",
            )
        except AssertionError:
            self.stop()
            raise AssertionError("the relay did not start:\n" + self.log_text()[-4000:]) from None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def log_text(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def standin():
    with StandIn(CLIENT_ID, CLIENT_SECRET) as api:
        for name, sourced in STUDENTS.items():
            api.users[f"{name}@school.edu"] = [sourced]
        yield api


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub_and_relay(request, tmp_path_factory, standin):
    """The hub and the relay service, the relay's store on each backend in turn."""
    hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
    relay = RelayProcess(tmp_path_factory.mktemp("relay"), hub, standin)
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        database = f"relay_service_{free_port()}"
        relay.db_url = server.create_database(database)
    try:
        relay.start(via_hub=False)
        hub.start()
        for name in (*STUDENTS, "principal"):
            hub.create_user(name)
        yield hub, relay
    finally:
        relay.stop()
        hub.stop()


@pytest.fixture(scope="module")
def hub(hub_and_relay):
    return hub_and_relay[0]


@pytest.fixture(scope="module")
def relay_service(hub_and_relay):
    return hub_and_relay[1]


@pytest.fixture(scope="module")
def tokens(hub):
    """Tokens as servers would hold them: with the relay's scope (the docs' settings) or
    without it (a hub that did not set c.Spawner.server_token_scopes), and a service's."""
    return {
        "ada": hub.token("ada", [SCOPE, "users:activity!user=ada"]),
        "bob": hub.token("bob", [SCOPE, "users:activity!user=bob"]),
        "ada-no-scope": hub.token("ada", ["users:activity!user=ada"]),
        "service": ADMIN_TOKEN,
    }
