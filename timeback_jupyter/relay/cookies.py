"""The secret that signs the pages' login cookie, shared by every replica behind one URL.

A browser logged in through the hub's OAuth holds a cookie the relay signed; the next request
may reach another replica, which must accept the same signature. So, as JupyterHub does with
``JUPYTERHUB_COOKIE_SECRET`` and ``cookie_secret_file``, the secret comes from the environment
or a file (hex), and a file others could read is refused: it is a credential (whoever holds it
can sign cookies the relay trusts) and is kept like one.
"""

from __future__ import annotations

import binascii
import os
import secrets
import stat
from collections.abc import Mapping

from ..config import ConfigError

COOKIE_SECRET_ENV = "TIMEBACK_RELAY_COOKIE_SECRET"
MIN_BYTES = 32


class CookieSecretError(ConfigError):
    """The configured cookie secret cannot be used; the message says what to fix."""


def _decode(text: str, where: str) -> bytes:
    try:
        secret = binascii.a2b_hex(text.strip())
    except (binascii.Error, ValueError):
        raise CookieSecretError(
            f"{where} is not hex: make one with `openssl rand -hex 32`"
        ) from None
    if len(secret) < MIN_BYTES:
        raise CookieSecretError(
            f"{where} holds {len(secret)} bytes, fewer than {MIN_BYTES}: make one with "
            "`openssl rand -hex 32`"
        )
    return secret


def load_cookie_secret(path: str, environ: Mapping[str, str]) -> bytes | None:
    """The shared secret from ``$TIMEBACK_RELAY_COOKIE_SECRET`` or the file at ``path``;
    None when neither is set (each process then makes its own)."""
    if environ.get(COOKIE_SECRET_ENV, "").strip():
        return _decode(environ[COOKIE_SECRET_ENV], f"${COOKIE_SECRET_ENV}")
    if not path:
        return None
    where = f"c.Relay.cookie_secret_file {path!r}"
    try:
        mode = os.stat(path).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise CookieSecretError(
                f"{where} may be read by others (mode {stat.S_IMODE(mode):o}): "
                f"chmod 600 it (Kubernetes: defaultMode: 0400 on the Secret's volume)"
            )
        with open(path, encoding="ascii") as file:
            text = file.read()
    except OSError as err:
        raise CookieSecretError(f"{where} cannot be read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise CookieSecretError(f"{where} is not hex text") from None
    return _decode(text, where)


def new_cookie_secret() -> bytes:
    return secrets.token_bytes(MIN_BYTES)
