"""One OAuth access token for every relay replica of one client, kept in the relay's database.

Each process's official ``TokenManager`` caches the token it fetched: N replicas would ask the
token endpoint N times, and again N times at every expiry. :class:`SharedTokenManager` is that
manager with the cache in the ``relay_tokens`` row of (token URL, client id): a replica uses
the stored token while it is valid (the SDK's early refresh, a minute before expiry, kept);
the one that finds it expired marks the row "fetching" for at most the request's timeout
(committed, so no lock is held across the HTTP call), fetches and stores the next token; the
others meanwhile wait for that row. After a 401 the token is dropped from the row only if it is
still the one that failed (another replica may already have stored a fresh one).

The token is a bearer credential for an hour at most; it lives where the relay's events do,
never in a log or an answer. The client secret is never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import RelayDatabase
from .schema import relay_tokens

LOG = logging.getLogger("timeback_jupyter.relay")
WAIT_STEP = 0.05  # seconds between looks while another replica fetches
_NEW_ROW = {
    name: dialect.insert(relay_tokens).on_conflict_do_nothing(index_elements=["key"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def token_key(token_url: str, client_id: str) -> str:
    return hashlib.sha256(f"{token_url}\n{client_id}".encode()).hexdigest()


def _manager_class() -> type[Any]:
    from timeback_common import TokenManager

    return TokenManager


def shared_token_manager(
    manager: Any, db: RelayDatabase, *, now: Callable[[], float] = time.time
) -> Any:
    """A ``TokenManager`` like ``manager`` (same token URL, client, timeout) whose token is
    the one in ``db`` (imports the SDK)."""

    class SharedTokenManager(_manager_class()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(manager._config)
            self._db = db
            self._now = now
            self._key = token_key(self._config.token_url, self._config.client_id)
            self.fetched = 0  # tokens this process fetched itself

        async def get_token(self) -> str:
            if self._access_token and self._now() < self._token_expiry:
                return self._access_token
            deadline = time.monotonic() + float(self._config.timeout) * 2
            while True:
                token, mine = await asyncio.to_thread(self._take)
                if token is not None:
                    return token
                if mine:
                    return await self._fetch_and_store()
                if time.monotonic() > deadline:
                    # The one fetching went silent (it died mid-fetch): its mark expires
                    # before this, so this is only a store that never answers.
                    raise RuntimeError("no token: another relay replica's fetch never ended")
                await asyncio.sleep(WAIT_STEP)

        def _take(self) -> tuple[str | None, bool]:
            """(a valid stored token, None) or (None, whether this replica is to fetch)."""
            now = self._now()
            with self._db.write() as conn:
                # The row made once (replicas starting together: no unique-key error), then
                # locked: one replica at a time decides who fetches.
                conn.execute(_NEW_ROW[self._db.dialect], {"key": self._key})
                row = conn.execute(
                    sa.select(relay_tokens).where(relay_tokens.c.key == self._key).with_for_update()
                ).first()
                if row is not None and row.access_token and now < row.expires_at:
                    self._access_token, self._token_expiry = row.access_token, row.expires_at
                    return row.access_token, False
                if row is not None and now < row.fetching_until:
                    return None, False
                conn.execute(
                    sa.update(relay_tokens)
                    .where(relay_tokens.c.key == self._key)
                    .values(fetching_until=now + float(self._config.timeout))
                )
            return None, True

        async def _fetch_and_store(self) -> str:
            try:
                token = await self._fetch_token()  # the SDK's own request; sets the expiry
            except BaseException:
                await asyncio.to_thread(self._store, None, 0.0)  # let another try
                raise
            self.fetched += 1
            await asyncio.to_thread(self._store, token, self._token_expiry)
            return token

        def _store(self, token: str | None, expires_at: float) -> None:
            with self._db.write() as conn:
                conn.execute(
                    sa.update(relay_tokens)
                    .where(relay_tokens.c.key == self._key)
                    .values(access_token=token, expires_at=expires_at, fetching_until=0.0)
                )

        def invalidate(self) -> None:
            failed = self._access_token
            super().invalidate()
            if not failed:
                return
            try:
                with self._db.write() as conn:
                    conn.execute(
                        sa.update(relay_tokens)
                        .where(
                            relay_tokens.c.key == self._key,
                            relay_tokens.c.access_token == failed,
                        )
                        .values(access_token=None, expires_at=0.0)
                    )
            except Exception as err:  # the next get_token finds out; never fail the 401 path
                LOG.warning("could not drop the refused token from the relay's store: %s", err)

    return SharedTokenManager()


def share_tokens(connection: Any, db: RelayDatabase) -> Any:
    """Make every client on ``connection`` (the Caliper sink, the OneRoster lookup) take its
    token from ``db``. The official provider keeps one manager per token URL in
    ``_token_managers`` (timeback-common 0.4) and hands it to each client it builds; ours
    replaces it there before any client is built. Returns the shared manager."""
    provider = connection.provider()
    manager = connection.token_manager("caliper")
    shared = shared_token_manager(manager, db)
    managers = provider._token_managers
    for url, held in list(managers.items()):
        if held is manager:
            managers[url] = shared
    if connection.token_manager("caliper") is not shared:
        raise RuntimeError("the official provider no longer shares its token manager this way")
    return shared
