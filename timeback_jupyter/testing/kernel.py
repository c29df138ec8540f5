"""A real kernel of a Jupyter server, driven as a browser drives it: cells and widget clicks.

The kernel calls the server (its timeback routes) while it runs a cell, and in a test that server
answers on the test's event loop; so the blocking client lives in a thread of its own and the
loop keeps running while a cell does. Every iopub message is read, not only those of the cell
that is running: a click's handler updates widgets under the click's header, and what the
completion widget says is the most readable account of why an activity did not complete.
"""

from __future__ import annotations

import asyncio
import html
import queue
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from jupyter_client.blocking.client import BlockingKernelClient

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TAG = re.compile(r"<[^>]+>")
# CompletionButton adds this class to its box (`jupyter timeback strip` relies on it too).
WIDGET_CLASS = "timeback-completion"


def plain(text: str) -> str:
    """Terminal colours and HTML markup taken out: the words a student reads."""
    return html.unescape(_TAG.sub("", _ANSI.sub("", text)))


@dataclass(frozen=True)
class Execution:
    """What running one piece of code printed and whether it raised."""

    stdout: str
    stderr: str
    error: str | None  # "ZeroDivisionError: division by zero", None when the code ran
    traceback: str  # plain text, empty when it ran


@dataclass(frozen=True)
class CompletionWidget:
    """A ``CompletionButton`` as the student sees it (plain text)."""

    title: str
    details: str
    button: str  # the button's label: "Mark complete", then "Completed"
    disabled: bool
    message: str  # "Not yet: answer q3 first", "Completed (attempt 1) · ...", ""
    button_id: str  # the button's widget model id (what a click is sent to)


class Reading:
    """One request's output, read from its kernel's iopub messages until the kernel is idle."""

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        self._out: list[str] = []
        self._err: list[str] = []
        self._error: str | None = None
        self._traceback = ""

    def add(self, msg: dict[str, Any]) -> Execution | None:
        """Take one iopub message (of any request); the execution once the request is done."""
        if msg["parent_header"].get("msg_id") != self.msg_id:
            return None
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            target = self._out if content.get("name") == "stdout" else self._err
            target.append(content.get("text", ""))
        elif kind == "error":
            self._error = f"{content.get('ename')}: {content.get('evalue')}"
            self._traceback = plain("\n".join(content.get("traceback") or ()))
        elif kind == "status" and content.get("execution_state") == "idle":
            return Execution("".join(self._out), "".join(self._err), self._error, self._traceback)
        return None


class WidgetModels:
    """The kernel's ipywidgets models as its iopub messages make them (each one is read, not
    only a request's own: a click's handler updates widgets under the click's header), and the
    completion widgets among them. For a kernel client over ZMQ or the WebSocket alike."""

    _models: dict[str, dict[str, Any]]  # widget states by comm id

    def completion_widgets(self) -> list[CompletionWidget]:
        """The notebook's completion widgets, in the order they were made."""
        found = []
        for box in self._models.values():
            if WIDGET_CLASS not in (box.get("_dom_classes") or ()):
                continue
            ids = [str(c).removeprefix("IPY_MODEL_") for c in box.get("children") or ()]
            parts = [self._models.get(i, {}) for i in ids]
            if len(parts) < 4:
                continue
            title, details, button, message = parts[:4]
            found.append(
                CompletionWidget(
                    title=plain(str(title.get("value", ""))),
                    details=plain(str(details.get("value", ""))),
                    button=str(button.get("description", "")),
                    disabled=bool(button.get("disabled")),
                    message=plain(str(message.get("value", ""))),
                    button_id=ids[2],
                )
            )
        return found

    def _read(self, reading: Reading, msg: dict[str, Any]) -> Execution | None:
        """One iopub message: the widgets it changes noted, the request's output added."""
        self._note_widget(msg["msg_type"], msg["content"])
        return reading.add(msg)

    def _note_widget(self, kind: str, content: dict[str, Any]) -> None:
        data = content.get("data") or {}
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            self._models[content["comm_id"]] = dict(data.get("state") or {})
        elif kind == "comm_msg" and data.get("method") in ("update", "echo_update"):
            model = self._models.get(content.get("comm_id", ""))
            if model is not None:
                model.update(data.get("state") or {})
        elif kind == "comm_close":
            self._models.pop(content.get("comm_id", ""), None)


class KernelDriver(WidgetModels):
    """A blocking client of one kernel, run from one thread of its own."""

    def __init__(self, connection_info: dict[str, Any], *, ready_timeout: float = 60) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeback-kernel")
        self._models: dict[str, dict[str, Any]] = {}  # widget states by comm id
        self.client = self._thread.submit(self._connect, connection_info, ready_timeout).result()

    @staticmethod
    def _connect(info: dict[str, Any], ready_timeout: float) -> BlockingKernelClient:
        client = BlockingKernelClient()
        client.load_connection_info(cast(Any, info))  # a KernelConnectionInfo TypedDict
        # No heartbeat channel: it calls a kernel dead when importing takes over a second on a
        # busy machine; a kernel_info reply within the timeout is what readiness means.
        client.start_channels(hb=False)
        client.wait_for_ready(timeout=ready_timeout)
        return client

    async def _call(self, fn: Any, *args: Any) -> Any:
        # run_in_executor, not to_thread: jupyter_core keeps its loop in a context variable
        # that to_thread would copy into the thread.
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(fn, *args))

    async def execute(self, code: str, timeout: float) -> Execution:
        result: Execution = await self._call(self._execute, code, timeout)
        return result

    async def click(self, button_id: str, timeout: float) -> Execution:
        """What the browser sends when the student clicks an ipywidgets Button."""
        result: Execution = await self._call(self._click, button_id, timeout)
        return result

    async def stop(self) -> None:
        await self._call(self.client.stop_channels)
        self._thread.shutdown()

    # ---- in the driver's thread ----------------------------------------------------------

    def _execute(self, code: str, timeout: float) -> Execution:
        msg_id = self.client.execute(code, allow_stdin=False)
        deadline = time.monotonic() + timeout
        execution = self._until_idle(msg_id, deadline)
        while True:  # the reply, so the next request does not read it
            reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return execution

    def _click(self, button_id: str, timeout: float) -> Execution:
        data = {"method": "custom", "content": {"event": "click"}}
        msg = self.client.session.msg("comm_msg", {"comm_id": button_id, "data": data})
        self.client.shell_channel.send(msg)
        return self._until_idle(msg["header"]["msg_id"], time.monotonic() + timeout)

    def _until_idle(self, msg_id: str, deadline: float) -> Execution:
        reading = Reading(msg_id)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the kernel did not finish in time")
            try:
                msg = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                continue  # the deadline check above words it
            done = self._read(reading, msg)
            if done is not None:
                return done
