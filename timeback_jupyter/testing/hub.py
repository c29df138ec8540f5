"""A real JupyterHub for tests: students as OS users, their servers running this extension.

The hub runs as a process of its own (as root, as on a school's server), with
configurable-http-proxy from npm, the dummy authenticator and JupyterHub's
``LocalProcessSpawner``: each student's single-user server runs as that student's OS user
(:mod:`.hub_env` makes them), so it can read neither root's files nor another student's, nor
the ``/proc`` of their processes. The hub's configuration is the documented one
(``docs/jupyterhub_config.py``, run as an admin's ``jupyterhub_config.py`` runs) followed by
this machine's parts: addresses, the authenticator, the spawner and the command that starts
the servers with this checkout's environment (see :func:`.hub_env.student_python`).

The harness talks to the hub's REST API with a service token of its own, and to the students'
servers through the hub's proxy with each student's own token (:mod:`.hub_student`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from .hub_student import StudentServer

RELAY_SERVICE = "timeback-relay"  # the service name the docs' config gives the relay
HARNESS_SERVICE = "test-harness"
# The single-user servers' settings for tests: windows closed and delivered quickly.
FAST_SERVER_ARGS = (
    "--Timeback.heartbeat_interval=1.0",
    "--Timeback.metadata_write_delay=0.3",
    "--Timeback.drain_interval=0.1",
    "--Timeback.retry_initial=0.05",
    "--Timeback.retry_max=1.0",
    # a send to a relay that is away gives up (and is settled later) in seconds, so a server
    # stopping then does not wait out the default 30 s
    "--Timeback.request_timeout=5.0",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat_fields[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class HubError(RuntimeError):
    """The hub did not do what was asked; the message holds the end of its log."""


class Hub:
    """One JupyterHub: ``start()``, ``spawn(user)``, ``server(user)``, ``restart()``, ``stop()``.

    ``workdir``: a folder only root can read (the hub's database, cookie secret, config and
    log go there). ``python``: the interpreter students' servers run with. ``chp``: the
    ``configurable-http-proxy`` executable. ``docs_config``: the documented
    ``jupyterhub_config.py`` to start from. ``relay``: keep the relay service and the servers'
    ``$TIMEBACK_RELAY_URL`` from the docs' config (False: the servers record on their local
    sink). ``environ``: the hub's own environment on top of this process's (the Timeback
    credentials the docs' config hands to the relay). ``relay_args``: appended to the relay's
    command (this machine's stand-in addresses, its database in ``workdir``).
    ``server_environment``: added to the servers' (``c.Spawner.environment``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        students: Sequence[str],
        python: Path,
        chp: Path,
        docs_config: Path,
        relay: bool = True,
        environ: Mapping[str, str] | None = None,
        server_args: Sequence[str] = FAST_SERVER_ARGS,
        relay_args: Sequence[str] = (),
        server_environment: Mapping[str, str] | None = None,
        extra_config: str = "",
    ) -> None:
        self.workdir = workdir
        self.students = tuple(students)
        self.python = python
        self.chp = chp
        self.docs_config = docs_config
        self.relay = relay
        self.environ = dict(environ or {})
        self.server_args = tuple(server_args)
        self.relay_args = tuple(relay_args)
        self.server_environment = dict(server_environment or {})
        self.extra_config = extra_config
        self.port, self.hub_port, self.proxy_api_port, self.relay_port = (
            free_port() for _ in range(4)
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.relay_url = f"http://127.0.0.1:{self.relay_port}"
        self.token = secrets.token_hex(24)  # the harness's service token
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "hub.log"
        self._log: Any = None
        self._user_tokens: dict[str, str] = {}
        self.http = httpx.Client(
            base_url=f"{self.url}/hub/api/",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
        )
        self.start_seconds = 0.0  # how long the last start took, for the record

    # ---- the process ---------------------------------------------------------------------

    def start(self) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(self.config_text())
        env = {**os.environ, **self.environ}
        # The relay's command (`jupyter timeback relay`) is looked up on the hub's PATH.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        began = time.monotonic()
        self._log = open(self.log_path, "a")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(lambda: self._get_ok("") and self._proxy_ok(), 90, "the hub to answer")
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the hub as an admin does (SIGTERM: it stops the servers and the relay)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(180)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a relay or server the hub left
        self.proc.wait(10)
        self._stop_left_proxy()
        self.proc = None
        self._log.close()
        self._user_tokens.clear()

    def _stop_left_proxy(self) -> None:
        """JupyterHub starts configurable-http-proxy in a session of its own, so a hub that dies
        before stopping it leaves it out of reach of the kill above, holding the ports."""
        pid_file = self.workdir / "jupyterhub-proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return  # stopped by the hub (it removes the file) or already gone
        if b"configurable-http-proxy" in cmdline:  # not a pid reused by another process
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    def restart(self) -> Hub:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self.http.close()

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ---- the configuration ---------------------------------------------------------------

    def config_text(self) -> str:
        """The hub's ``jupyterhub_config.py``: the documented config, then this machine's."""
        students = sorted(self.students)
        roles = [
            {
                "name": HARNESS_SERVICE,
                "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
                "services": [HARNESS_SERVICE],
            }
        ]
        spawner_cmd = [str(self.python), "-m", "jupyterhub.singleuser"]
        return f"""\
# Written by timeback_jupyter.testing.hub. First the documented configuration, as an admin
# copies it; then what only this test machine needs.
import json
from pathlib import Path

exec(compile(Path({str(self.docs_config)!r}).read_text(), {str(self.docs_config)!r}, "exec"))

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{str(self.chp)!r}]
c.JupyterHub.db_url = "sqlite:///{self.workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{self.workdir}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{self.workdir}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set({students!r})
c.JupyterHub.spawner_class = "localprocess"
c.JupyterHub.allow_named_servers = True
c.Spawner.cmd = {spawner_cmd!r}
c.Spawner.args = {list(self.server_args)!r}
# A server stops on SIGINT with Jupyter's cleanup (timeback_jupyter/server/sigint.py): 2 s of
# flush, up to 10 s for a send in flight (a relay away), the kernels; JupyterHub's own 30 s of
# interrupt_timeout covers that. One still running then is stuck: SIGTERM, 5 s, SIGKILL.
c.LocalProcessSpawner.interrupt_timeout = 30
c.LocalProcessSpawner.term_timeout = 5
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.init_spawners_timeout = 1  # don't hold the start for servers left running

services = c.JupyterHub.services
if hasattr(services, "get_value"):  # the docs' config appended to an unset list
    services = services.get_value([])
environment = c.Spawner.environment
if hasattr(environment, "get_value"):
    environment = environment.get_value({{}})
relay = next(s for s in services if s["name"] == {RELAY_SERVICE!r})
if {self.relay!r}:
    relay["url"] = {self.relay_url!r}
    relay["cwd"] = {str(self.workdir)!r}
    relay["command"] = list(relay["command"]) + {list(self.relay_args)!r}
    environment["TIMEBACK_RELAY_URL"] = {self.relay_url + f"/services/{RELAY_SERVICE}/"!r}
else:
    services.remove(relay)
    environment.pop("TIMEBACK_RELAY_URL", None)
environment.update({self.server_environment!r})
services.append({{"name": {HARNESS_SERVICE!r}, "api_token": {self.token!r}}})
c.JupyterHub.services = services
c.Spawner.environment = environment
c.JupyterHub.load_roles = json.loads({json.dumps(roles)!r})
{self.extra_config}
"""

    # ---- the hub's API -------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def user(self, name: str) -> dict[str, Any]:
        response = self.api("GET", f"users/{name}")
        response.raise_for_status()
        return dict(response.json())

    def token_for(self, user: str, *, fresh: bool = False, **body: Any) -> str:
        """An API token of ``user`` (with their own permissions), made once per hub start."""
        if fresh or body or user not in self._user_tokens:
            response = self.api(
                "POST", f"users/{user}/tokens", json={"note": "test harness", **body}
            )
            self._check(response, f"a token for {user}")
            token = str(response.json()["token"])
            if fresh or body:
                return token
            self._user_tokens[user] = token
        return self._user_tokens[user]

    def spawn(self, user: str, server_name: str = "", timeout: float = 180) -> StudentServer:
        """Start ``user``'s server (named ``server_name``, "" the default) and wait until it
        answers through the proxy with the extension loaded."""
        path = f"users/{user}/servers/{server_name}" if server_name else f"users/{user}/server"
        response = self.api("POST", path)
        if response.status_code not in (201, 202, 400):  # 400: already running
            self._check(response, f"starting {user}'s server")

        def ready() -> bool:
            server = self.user(user).get("servers", {}).get(server_name)
            return bool(server and server.get("ready"))

        self._wait(ready, timeout, f"{user}'s server {server_name!r} to be ready")
        server = self.server(user, server_name)
        self._wait(server.answers, 60, f"{user}'s server to answer through the proxy")
        return server

    def stop_server(self, user: str, server_name: str = "", timeout: float = 60) -> None:
        path = f"users/{user}/servers/{server_name}" if server_name else f"users/{user}/server"
        response = self.api("DELETE", path)
        if response.status_code not in (202, 204, 400):
            self._check(response, f"stopping {user}'s server")

        def stopped() -> bool:
            return server_name not in self.user(user).get("servers", {})

        self._wait(stopped, timeout, f"{user}'s server to stop")

    def server(self, user: str, server_name: str = "") -> StudentServer:
        return StudentServer(self.url, user, server_name, self.token_for(user))

    # ---- the relay ---------------------------------------------------------------------

    def relay_api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Call the relay through the hub's proxy, as a server does (``token``: whose)."""
        headers = {"Authorization": f"token {token}"} if token else {}
        url = f"{self.url}/services/{RELAY_SERVICE}/{path}"
        return httpx.request(method, url, headers=headers, timeout=60, **kwargs)

    def relay_pid(self, timeout: float = 60) -> int:
        """The pid of the relay the hub runs (waiting for the hub to (re)start it)."""
        found: list[int] = []

        def running() -> bool:
            found[:] = [pid for pid in _children(self.proc.pid if self.proc else -1)
                        if b"relay" in _cmdline(pid)]  # fmt: skip
            return bool(found) and self.relay_api("GET", "api/health").status_code == 200

        self._wait(running, timeout, "the relay to run")
        return found[0]

    # ---- waiting -------------------------------------------------------------------------

    def _get_ok(self, path: str) -> bool:
        try:
            return self.api("GET", path).status_code == 200
        except httpx.TransportError:
            return False

    def _proxy_ok(self) -> bool:
        try:
            return httpx.get(f"{self.url}/hub/health", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def _wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise HubError(f"the hub exited ({self.proc.returncode}):\n{self.log_tail()}")
            time.sleep(0.2)
        raise HubError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.is_error:
            raise HubError(f"{what}: {response.status_code} {response.text}\n{self.log_tail()}")
