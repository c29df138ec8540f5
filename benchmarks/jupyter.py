"""Real `jupyter server` processes for benchmarks, with the extension enabled or disabled.

Each server gets its own config, data and runtime directories, so the user's Jupyter setup
never leaks into a figure. Kernels are driven the way JupyterLab drives them: through the
server's websocket at ``/api/kernels/{id}/channels``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nbformat
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

TOKEN = "benchmark-token"
STUDENT = "ada@school.edu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(root: Path, name: str, timeback: dict[str, Any] | None = None) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    if timeback is not None:
        nb.metadata["timeback"] = timeback
    (root / name).write_text(nbformat.writes(nb))
    return name


def activity(n: int) -> dict[str, Any]:
    return {
        "id": f"activity-{n}",
        "name": f"Activity {n}",
        "course": {"subject": "Math", "grade": 3},
        "stateful": False,
    }


def server_env(
    workdir: Path,
    extension: bool,
    timeback: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a server in ``workdir``: its own config, data and runtime dirs."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_dir = workdir / "config"
    config_dir.mkdir(exist_ok=True)
    # The config dir outranks the environment's jupyter_server_config.d, where the
    # package's own file enables the extension: this is how a user would turn it off.
    config = {
        "ServerApp": {"jpserver_extensions": {"timeback_jupyter": extension}},
        "Timeback": {
            "store_path": str(workdir / "timeback.sqlite3"),
            "student_email": STUDENT,
            **(timeback or {}),
        },
    }
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_DATA_DIR": str(workdir / "data"),
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        **(env or {}),
    }


def server_args(port: int, root: Path) -> list[str]:
    """``jupyter server``'s command-line options, as every benchmark server runs it."""
    return [
        "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}",
        "--MultiKernelManager.default_kernel_name=python3",
        # A port taken meanwhile must fail the start, not move it where we do not look.
        "--ServerApp.port_retries=0",
    ]  # fmt: skip


class JupyterServer:
    """One `jupyter server` subprocess; ``extension=False`` runs plain Jupyter."""

    def __init__(
        self,
        workdir: Path,
        root: Path,
        *,
        extension: bool,
        timeback: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir, self.root, self.extension = workdir, root, extension
        self.runtime = workdir / "runtime"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = server_env(workdir, extension, timeback, env)
        args = [sys.executable, "-m", "jupyter_server", *server_args(self.port, root)]
        self.log_path = workdir / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop())
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {TOKEN}"}, timeout=30
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.01) -> float:
        """Seconds from launch until Jupyter's own /api/status answers 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                if self.http.get("/api/status").status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(poll)
        raise RuntimeError(f"jupyter server did not start in {timeout}s ({self.log_path})")

    def open(self, path: str) -> dict[str, Any]:
        """A notebook session with a new kernel, as JupyterLab opens one."""
        r = self.http.post(
            "/api/sessions",
            json={"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}},
        )
        r.raise_for_status()
        return dict(r.json())

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover kernels
        self.http.close()
        self._log.close()

    def __enter__(self) -> JupyterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KernelSocket:
    """A kernel's websocket as JupyterLab uses it (the JSON message protocol)."""

    def __init__(self, conn: WebSocketClientConnection, session: str) -> None:
        self.conn, self.session = conn, session
        stream = getattr(conn, "protocol", None) and conn.protocol.stream  # type: ignore[union-attr]
        self._socket = getattr(stream, "socket", None)

    def _ack_promptly(self) -> None:
        # jupyter_server writes each iopub message apart, without TCP_NODELAY: Nagle then
        # holds the next one until this client ACKs, and Linux delays ACKs ~40 ms. That stall
        # belongs to neither arm and would drown the difference measured: ACK at once.
        if self._socket is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    @classmethod
    async def connect(cls, server: JupyterServer, kernel_id: str) -> KernelSocket:
        session = uuid.uuid4().hex
        url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?session_id={session}"
        request = HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"})
        conn = await websocket_connect(request)
        sock = cls(conn, session)
        await sock.execute("pass", timeout=60)  # the kernel is ready once it answers
        return sock

    def _message(self, code: str) -> tuple[str, str]:
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "username": "bench",
                "session": self.session,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": datetime.now(UTC).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        return msg_id, json.dumps(msg)

    async def _answers(self, code: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Send ``code`` as an execute_request; yield the messages that answer it, in order."""
        msg_id, text = self._message(code)
        deadline = time.perf_counter() + timeout
        await self.conn.write_message(text)
        while True:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no answer to {code!r} in {timeout}s")
            self._ack_promptly()
            raw = await self.conn.read_message()
            if raw is None:
                raise ConnectionError("the kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                yield msg

    async def execute(self, code: str, timeout: float = 30.0) -> float:
        """Seconds from sending an execute_request to having both its reply and its idle."""
        started = time.perf_counter()
        replied = idle = False
        async for msg in self._answers(code, timeout):
            kind = msg["header"]["msg_type"]
            if kind == "execute_reply":
                if msg["content"].get("status") != "ok":
                    raise RuntimeError(f"{code!r} failed: {msg['content']}")
                replied = True
            elif kind == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
            if replied and idle:
                break
        return time.perf_counter() - started

    async def output(self, code: str, timeout: float = 60.0) -> str:
        """Run ``code``; what it printed, and its error if it raised one."""
        out: list[str] = []
        async for msg in self._answers(code, timeout):
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        return "".join(out)

    def close(self) -> None:
        self.conn.close()
