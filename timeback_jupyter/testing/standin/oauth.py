"""OAuth2 client credentials as Timeback's token endpoint speaks it (HTTP Basic client auth)."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs


class Tokens:
    """The bearer tokens issued so far; ``clear()`` makes the upstream forget them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: set[str] = set()

    def issue(self) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._issued.add(token)
        return token

    def valid(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries a token issued here."""
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            return header[len("Bearer ") :] in self._issued

    def clear(self) -> None:
        with self._lock:
            self._issued.clear()


def basic_client_id(header: str | None) -> str | None:
    """The client id of an HTTP Basic ``Authorization`` header, whatever its secret."""
    header = header or ""
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[len("Basic ") :]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def token_answer(
    body: bytes,
    header: str | None,
    *,
    client_id: str,
    client_secret: str,
    tokens: Tokens,
    ttl: int,
) -> tuple[int, Any]:
    """The token endpoint's status and JSON answer to a POST of ``body`` with ``header``."""
    form = parse_qs(body.decode(errors="replace"))
    if form.get("grant_type") != ["client_credentials"]:
        return 400, {"error": "unsupported_grant_type"}
    expected = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    if (header or "") != f"Basic {expected}":
        return 401, {"error": "invalid_client"}
    return 200, {"access_token": tokens.issue(), "token_type": "Bearer", "expires_in": ttl}
