"""The hub's answers for tokens, kept for the ingest: "whose token is this?" asked once per
token per ``c.Relay.auth_cache_seconds``, and what the face makes of the answer (the hub user,
or why it is refused) worked out once per answer, not per request.

HubAuth's own cache did the first part at ~4% of the ingest's CPU (a SHA-256 of the token, a
URL joined and a coroutine made per request, then the scopes parsed again by ``check_scopes``).
This one sits in front of it and replaces it for the routes that use it: on a miss it asks the
hub with ``use_cache=False``, so an answer is trusted for ``max_age`` seconds from just
*before* the hub was asked, never longer than HubAuth's cache would have kept it (which counts
from when the answer arrived): a revoked token stops working within ``auth_cache_seconds``.
Answers that a token is unknown are kept the same time, as HubAuth keeps them. ``max_age`` 0
is HubAuth's "keep forever"; this cache then steps aside and HubAuth's is used as it was.

Bounded: at most ``max_size`` tokens, the least recently used dropped first. Keys are SHA-256
digests of the tokens, so no token is held here (nor shown by a ``repr``).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from jupyterhub.services.auth import HubAuth

MAX_TOKENS = 50_000  # a district's students' servers, with room; a flood of junk evicts only junk


class Known:
    """The hub's answer for one token: its model (None: the hub does not know the token), when
    it stops being trusted, and ``made``: what the face made of it, kept with it."""

    __slots__ = ("expires", "made", "model")

    def __init__(self, model: dict[str, Any] | None, expires: float) -> None:
        self.model, self.expires = model, expires
        self.made: Any = None

    def __repr__(self) -> str:
        name = None if self.model is None else self.model.get("name")
        return f"Known(name={name!r}, expires={self.expires:.0f})"


class HubTokens:
    """Token -> :class:`Known`, each kept ``max_age`` seconds at most (HubAuth's
    ``cache_max_age``, i.e. ``c.Relay.auth_cache_seconds``)."""

    def __init__(
        self,
        auth: HubAuth,
        *,
        max_size: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.auth = auth
        self.max_age = float(auth.cache_max_age)
        self.max_size = max_size
        self.clock = clock
        self._known: OrderedDict[bytes, Known] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def __repr__(self) -> str:
        return f"HubTokens({len(self._known)} tokens, max_age={self.max_age:g})"

    async def lookup(self, token: str) -> Known:
        """What the hub says of ``token`` (raises as ``HubAuth.user_for_token`` does when the
        hub cannot be asked: nothing is kept then)."""
        if self.max_age <= 0:
            model = await self.auth.user_for_token(token, sync=False)
            return Known(model, float("inf"))
        key = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        known = self._known.get(key)
        now = self.clock()
        if known is not None:
            if now < known.expires:
                self._known.move_to_end(key)
                return known
            del self._known[key]
        model = await self.auth.user_for_token(token, use_cache=False, sync=False)
        known = Known(model, now + self.max_age)
        self._known[key] = known
        self._known.move_to_end(key)  # another request may have stored it while we asked
        while len(self._known) > self.max_size:
            self._known.popitem(last=False)
        return known
