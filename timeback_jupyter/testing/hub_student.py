"""A student's single-user server as a browser reaches it through JupyterHub: REST and the
kernel's WebSocket behind the hub's proxy, authenticated with the student's own token.

The kernel client speaks Jupyter's WebSocket protocol (JSON frames, one per message) and reads
widgets as :class:`~.kernel.KernelDriver` does, so a notebook's cells and its "Mark complete"
buttons run here as they do in the single-server tests.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import nbformat
import websocket

from .kernel import CompletionWidget, Execution, Reading, WidgetModels


class WebSocketKernel(WidgetModels):
    """One kernel over ``/api/kernels/<id>/channels``: ``execute``, ``click``, widgets."""

    def __init__(self, url: str, token: str, *, ready_timeout: float = 120) -> None:
        self._models: dict[str, dict[str, Any]] = {}
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: token {token}"], timeout=ready_timeout
        )
        deadline = time.monotonic() + ready_timeout
        while True:  # ready: a kernel_info reply (the first requests may be dropped)
            msg_id = self._send("shell", "kernel_info_request", {})
            if self._reply(msg_id, min(deadline, time.monotonic() + 5)):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the kernel did not answer kernel_info in time")

    def execute(self, code: str, timeout: float = 60, *, history: bool = True) -> Execution:
        """Run ``code``; ``history=False`` keeps it out of IPython's history file."""
        msg_id = self._send(
            "shell",
            "execute_request",
            {"code": code, "silent": False, "store_history": history, "allow_stdin": False},
        )
        return self._until_idle(msg_id, time.monotonic() + timeout)

    def click(self, button_id: str, timeout: float = 60) -> Execution:
        data = {"method": "custom", "content": {"event": "click"}}
        msg_id = self._send("shell", "comm_msg", {"comm_id": button_id, "data": data})
        return self._until_idle(msg_id, time.monotonic() + timeout)

    def close(self) -> None:
        self.ws.close()

    # ---- the protocol --------------------------------------------------------------------

    def _send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "student",
            "date": datetime.now(UTC).isoformat(),
            "version": "5.3",
        }
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        self.ws.send(json.dumps({**message, "channel": channel}))
        return msg_id

    def _next(self, deadline: float) -> dict[str, Any] | None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.ws.settimeout(left)
        try:
            frame = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        if isinstance(frame, bytes):  # a message with binary buffers: no widget state we read
            return {}
        return dict(json.loads(frame))

    def _reply(self, msg_id: str, deadline: float) -> bool:
        while (msg := self._next(deadline)) is not None:
            if msg.get("channel") == "iopub":
                self._note_widget(msg["msg_type"], msg["content"])
            elif msg.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    def _until_idle(self, msg_id: str, deadline: float) -> Execution:
        reading = Reading(msg_id)
        while True:
            msg = self._next(deadline)
            if msg is None:
                raise TimeoutError("the kernel did not finish in time")
            if msg.get("channel") == "iopub" and (done := self._read(reading, msg)) is not None:
                return done


@dataclass(frozen=True)
class HubRun:
    """A notebook run through the hub: what each cell did, its widgets and the run's id."""

    path: str
    cells: tuple[Execution, ...]
    widgets: tuple[CompletionWidget, ...]
    run_id: str | None


class StudentServer:
    """One student's server (``server_name`` "" = their default) behind the hub's proxy."""

    def __init__(self, hub_url: str, user: str, server_name: str, token: str) -> None:
        self.user = user
        self.server_name = server_name
        self.token = token
        prefix = f"/user/{user}/{server_name + '/' if server_name else ''}"
        self.url = hub_url + prefix
        self.ws_url = "ws" + self.url.removeprefix("http")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=60
        )

    def answers(self) -> bool:
        try:
            return self.http.get("timeback/api/status").status_code == 200
        except httpx.TransportError:
            return False

    def json(self, method: str, path: str, body: Any = None, *, ok: bool = True) -> Any:
        response = self.http.request(method, path, json=body)
        if ok and response.is_error:
            raise AssertionError(
                f"{self.user}: {method} {path}: {response.status_code} {response.text}"
            )
        return response.json() if response.content else None

    def status(self) -> dict[str, Any]:
        return dict(self.json("GET", "timeback/api/status"))

    def flush(self, timeout: float = 30) -> dict[str, Any]:
        return dict(self.json("POST", "timeback/api/flush", {"timeout": timeout})["report"])

    def put_notebook(self, path: str, notebook: nbformat.NotebookNode) -> None:
        """Save a notebook into the student's home (through the contents API: theirs)."""
        self.json("PUT", f"api/contents/{path}", {"type": "notebook", "content": notebook})

    def put_file(self, path: str, text: str) -> None:
        self.json("PUT", f"api/contents/{path}", {"type": "file", "format": "text",
                                                  "content": text})  # fmt: skip

    def open(self, path: str) -> tuple[str, WebSocketKernel]:
        """Open ``path`` as the browser does (a session starts its kernel and the run)."""
        body = {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}
        session = self.json("POST", "api/sessions", body)
        url = f"{self.ws_url}api/kernels/{session['kernel']['id']}/channels"
        return str(session["id"]), WebSocketKernel(url, self.token)

    def close(self, session_id: str, kernel: WebSocketKernel) -> None:
        kernel.close()
        self.http.delete(f"api/sessions/{session_id}")

    def run_id(self, path: str) -> str | None:
        """The live run of ``path`` (the one a session on it started), if any."""
        response = self.http.post("timeback/api/runs", json={"path": path})
        if response.is_error:
            return None
        return str(response.json()["run"]["id"])

    def run_notebook(
        self, path: str, *, click: bool = True, keep_open: bool = False, timeout: float = 120
    ) -> HubRun:
        """Run the code cells of ``path`` (in the student's home) in order, click its enabled
        "Mark complete" buttons, and close it (unless ``keep_open``)."""
        content = self.json("GET", f"api/contents/{path}")["content"]
        session_id, kernel = self.open(path)
        ran: list[Execution] = []
        try:
            for cell in content["cells"]:
                source = cell["source"]
                source = source if isinstance(source, str) else "".join(source)
                if cell["cell_type"] != "code" or not source.strip():
                    continue
                result = kernel.execute(source, timeout)
                ran.append(result)
                if result.error is not None:
                    raise AssertionError(f"{self.user}: {path}: {result.error}\n{result.traceback}")
            run_id = self.run_id(path)
            if click:
                for widget in kernel.completion_widgets():
                    if not widget.disabled:
                        kernel.click(widget.button_id, timeout)
            widgets = tuple(kernel.completion_widgets())
        finally:
            if not keep_open:
                self.close(session_id, kernel)
        return HubRun(path, tuple(ran), widgets, run_id)

    def run_code(
        self, code: str, path: str = "scratch.ipynb", timeout: float = 120, *, history: bool = True
    ) -> Execution:
        """Run ``code`` in a kernel of a plain notebook (a student's cell); close it."""
        self.put_notebook(path, nbformat.v4.new_notebook())
        session_id, kernel = self.open(path)
        try:
            return kernel.execute(code, timeout, history=history)
        finally:
            self.close(session_id, kernel)
