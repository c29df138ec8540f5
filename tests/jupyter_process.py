"""A real `jupyter server` process for tests that stop, kill or time it from outside."""

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from jupyter_client.blocking.client import BlockingKernelClient

from .conftest import STUDENT

TOKEN = "restart-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sigint_as_a_spawner_leaves_it() -> None:
    # A test run started in the background of a non-interactive shell ignores SIGINT, and its
    # children would inherit that: a hub's spawner starts servers with SIGINT as Python's
    # default, which is what the SIGINT tests are about.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class JupyterProcess:
    """A Jupyter app (``module``: jupyter_server, jupyterlab) in its own process group (so
    kill -9 takes its kernels too) and its own Jupyter dirs under ``tmp``, waited for until
    the extension answers (and, with ``recording``, records: a drill may break its store)."""

    def __init__(
        self,
        tmp: Path,
        root: Path,
        module: str,
        token: str,
        args: list[str],
        env: dict[str, str] | None = None,
        *,
        http_timeout: float = 10,
        log_name: str = "server",
        recording: bool = False,
        python: str = sys.executable,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp, self.root = tmp, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime = tmp / "runtime"
        full_env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            **(env or {}),
        }
        command = [
            python, "-m", module, "--no-browser", "--allow-root",
            "--ServerApp.port_retries=0",  # a taken port must fail loudly, not move silently
            f"--port={self.port}", "--ip=127.0.0.1", f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            "--MultiKernelManager.default_kernel_name=python3",
            *args,
        ]  # fmt: skip
        self.log_path = tmp / f"{log_name}-{self.port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop() or kill())
        self.proc = subprocess.Popen(
            command,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_sigint_as_a_spawner_leaves_it,
        )
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=http_timeout
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = self.http.get("/timeback/api/status")
                if status.status_code == 200 and (not recording or status.json()["recording"]):
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log_path.read_text()
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"{module} did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.http.close()
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover kernels
        self.http.close()
        self.log.close()


class Server(JupyterProcess):
    """`jupyter server` with the extension on ``store``, short heartbeats and metadata delay."""

    def __init__(self, tmp: Path, root: Path, store: Path, *extra_args: str, env=None):
        self.store = store
        defaults = [
            f"--Timeback.store_path={store}", f"--Timeback.student_email={STUDENT}",
            "--Timeback.heartbeat_interval=0.5", "--Timeback.metadata_write_delay=0.2",
        ]  # fmt: skip
        # traitlets refuses a setting given twice on the command line: extra_args replace ours
        given = {arg.split("=", 1)[0] for arg in extra_args}
        args = [arg for arg in defaults if arg.split("=", 1)[0] not in given] + list(extra_args)
        super().__init__(tmp, root, "jupyter_server", TOKEN, args, env)

    def open(self, path: str) -> dict:
        r = self.http.post(
            "/api/sessions",
            json={"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}},
        )
        r.raise_for_status()
        return r.json()

    def execute(self, kernel_id: str, cells: int) -> None:
        client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{kernel_id}.json")
        )
        client.load_connection_file()
        client.start_channels(hb=False)  # a busy machine makes the heartbeat cry wolf
        try:
            client.wait_for_ready(timeout=30)
            for i in range(cells):
                reply = client.execute_interactive(
                    f"z = {i}; import time; time.sleep(0.2)", timeout=30
                )
                assert reply["content"]["status"] == "ok"
        finally:
            client.stop_channels()

    def run_cells(self, kernel_id: str, sources: list[str]) -> list[str]:
        """Run ``sources`` one by one as a frontend would; the text each one showed."""
        client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{kernel_id}.json")
        )
        client.load_connection_file()
        client.start_channels(hb=False)
        shown: list[str] = []
        try:
            client.wait_for_ready(timeout=60)
            for source in sources:
                texts: list[str] = []

                def collect(msg: dict, texts: list[str] = texts) -> None:
                    content = msg["content"]
                    if msg["msg_type"] == "error":
                        texts.append(f"ERROR {content['ename']}: {content['evalue']}")
                    texts.append(content.get("text", ""))
                    texts.append(str(content.get("data", {}).get("text/plain", "")))

                reply = client.execute_interactive(source, timeout=60, output_hook=collect)
                assert reply["content"]["status"] == "ok", (source, texts)
                shown.append("".join(texts))
        finally:
            client.stop_channels()
        return shown


def notebook_run(root: Path, path: str) -> dict | None:
    try:  # the server rewrites the file in place: a read may catch it half written
        meta = json.loads((root / path).read_text())["metadata"].get("timeback", {})
    except (ValueError, KeyError):
        return None
    return meta.get("run")


def wait(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stored(store: Path) -> tuple[list[str], list[tuple[str, float, float]]]:
    with sqlite3.connect(store) as db:
        ids = [row[0] for row in db.execute("SELECT event_id FROM outbox ORDER BY seq")]
        windows = list(db.execute('SELECT run_id, start, "end" FROM windows ORDER BY start'))
    return ids, windows
