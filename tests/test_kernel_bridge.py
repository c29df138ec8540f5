"""The kernel bridge's HTTP connection (the standard library's http.client) against a real HTTP
server: kept alive between calls, replaced when the server closed it or moved, never proxied,
and a slow server is a one-line ServerUnavailable. Its answers are tested in test_kernel_units."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from timeback_jupyter.kernel.bridge import TOKEN_HEADER, Bridge, ServerUnavailable


class _Kernel(BaseHTTPRequestHandler):
    """Answers every kernel route with what it saw; the server's ``mode`` changes its manners."""

    protocol_version = "HTTP/1.1"  # keep-alive, as tornado does

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        if server.mode == "slow":
            time.sleep(1.0)
        server.seen.append((self.command, self.path, self.client_address[1], dict(self.headers)))
        payload = json.dumps({"body": body.decode() or None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if server.mode == "hang-up":
            # Close without a "Connection: close": what a restarted or idle-timed-out server
            # leaves a client holding.
            self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *args):
        """Quiet: a request log on stderr would only clutter the test output."""


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (the slow test) breaks the pipe: expected


class _Server:
    def __init__(self, mode: str = "normal") -> None:
        self.http = _Quiet(("127.0.0.1", 0), _Kernel)
        self.http.mode, self.http.seen = mode, []
        self.url = f"http://127.0.0.1:{self.http.server_port}/base/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def seen(self) -> list:
        return self.http.seen

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def write_ticket(tmp_path, url: str, token: str = "t0k"):
    (tmp_path / "timeback").mkdir(exist_ok=True)
    ticket = {"url": url, "kernel_id": "k1", "token": token}
    (tmp_path / "timeback" / "kernel-k1.json").write_text(json.dumps(ticket))
    return tmp_path / "kernel-k1.json"


def test_calls_share_one_connection_and_ignore_proxies(tmp_path, server, monkeypatch):
    # A proxy set for the internet must not see (or break) calls to our own server.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    bridge = Bridge(write_ticket(tmp_path, server.url))
    try:
        assert bridge.get("run") == {"body": None}
        assert bridge.post("exercises", {"exercise": "q1", "correct": True, "é": 1}) == {
            "body": '{"exercise":"q1","correct":true,"é":1}'
        }
    finally:
        bridge.close()
    (get, get_path, port1, headers), (post, post_path, port2, _) = server.seen
    assert (get, get_path) == ("GET", "/base/timeback/api/kernel/run")
    assert (post, post_path) == ("POST", "/base/timeback/api/kernel/exercises")
    assert port1 == port2  # kept alive
    assert headers[TOKEN_HEADER] == "t0k"


def test_a_connection_the_server_closed_is_replaced_not_failed(tmp_path):
    server = _Server(mode="hang-up")
    bridge = Bridge(write_ticket(tmp_path, server.url))
    try:
        for _ in range(3):
            assert bridge.post("run", {}) == {"body": "{}"}
            time.sleep(0.05)  # the server's close reaches us before the next call
        assert len({port for *_, port, _headers in server.seen}) == 3
    finally:
        bridge.close()
        server.close()


def test_a_restarted_server_is_found_at_its_new_url_with_its_new_token(tmp_path):
    first, second = _Server(), _Server()
    connection = write_ticket(tmp_path, first.url, "old-token")
    bridge = Bridge(connection)
    try:
        bridge.get("run")
        first.close()
        write_ticket(tmp_path, second.url, "new-token")
        bridge.get("run")
        assert [h[TOKEN_HEADER] for *_, h in second.seen] == ["new-token"]
    finally:
        bridge.close()
        second.close()


def test_a_server_too_slow_to_answer_is_unavailable(tmp_path):
    server = _Server(mode="slow")
    bridge = Bridge(write_ticket(tmp_path, server.url), timeout=0.2)
    try:
        with pytest.raises(ServerUnavailable, match=r"does not answer \(TimeoutError\)$"):
            bridge.post("run", {})
    finally:
        bridge.close()
        server.close()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://127.0.0.1:port/", "http:///x"])
def test_a_url_it_cannot_call_is_said_so(tmp_path, url):
    with pytest.raises(ServerUnavailable, match="is not supported"):
        Bridge(write_ticket(tmp_path, url)).get("run")
