"""The relay's HTTP API, behind the hub's proxy at ``/services/<name>/``.

Every route but ``api/health`` and ``api/catalog`` asks the hub who the token in
``Authorization: token ...`` belongs to (:class:`jupyterhub.services.auth.HubAuth`, the same
check kbatch and ngshare make), then requires the relay's access scope and a user, not a
service: only a student's own server, with its own token, speaks for that student. Handlers
only parse, call the relay's core and answer; answers are JSON, errors ``{"message",
"reason"}`` as Jupyter's, never a traceback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.services.auth import HubAuth
from tornado import web

from ..store import StoreError
from .hub_tokens import HubTokens, Known
from .ingest import InvalidEnvelope, Relay, RelayUnavailable
from .users import HubUser

LOG = logging.getLogger("timeback_jupyter.relay")
# A Caliper envelope of a server's batch is tens of kB; anything this big is not one.
MAX_BODY_BYTES = 8 * 1024 * 1024
RETRY_AFTER_SECONDS = 2  # a 503's advice: a database restart or failover takes seconds


def error_message(reason: str, exc_info: Any) -> str:
    """The specific message of the ``HTTPError`` being written (``write_error``'s
    ``exc_info``), else ``reason``: one rule for the API's, the pages' and the live answers."""
    err = exc_info[1] if exc_info is not None else None
    if isinstance(err, web.HTTPError) and err.log_message:
        # tornado doubles every % of an argument-less message: formatting undoes it
        return err.log_message % err.args
    return reason


@dataclass
class Face:
    """What the handlers share: the relay's core, the hub's auth, the service's name."""

    relay: Relay
    auth: HubAuth
    service_name: str
    drainer: Any = None  # delivery.Drainer, for the status
    send_every: int = 0  # c.Relay.send_every: told to servers in each ingest answer
    tokens: HubTokens = field(init=False)  # the hub's answers, kept as HubAuth would keep them

    def __post_init__(self) -> None:
        self.tokens = HubTokens(self.auth)

    @property
    def scope(self) -> str:
        return f"access:services!service={self.service_name}"


def missing_scope_message(scope: str) -> str:
    """The 403 for a token without the relay's scope: what the hub admin must set."""
    return (
        f"this token lacks the scope {scope!r}: single-user servers need it in their token "
        f"(c.Spawner.server_token_scopes = ['users:activity!user', 'access:servers!server', "
        f"'{scope}']) and users must hold it (JupyterHub 6: c.JupyterHub.extra_user_scopes = "
        f"{{'{scope}'}}; JupyterHub 5: add it to the 'user' role in c.JupyterHub.load_roles)"
    )


SERVICE_REFUSED = "the relay takes events from users' servers only"


class RelayHandler(web.RequestHandler):
    face: Face

    def initialize(self, face: Face) -> None:
        self.face = face
        self.hub_name: str | None = None  # for the access log, once known

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """Token-only API: no cookie is ever read, so no cross-site request can act."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        message = error_message(reason, kwargs.get("exc_info"))
        if status_code == 503:
            # Nothing was stored (the database or OneRoster cannot be reached now): a sender
            # keeps the events and tries again after this long (RelaySink honours it).
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        self.finish(json.dumps({"message": message, "reason": reason}))

    def answer(self, body: Any) -> None:
        self.finish(json.dumps(body))

    # ---- who is calling -------------------------------------------------------------------

    async def hub_known(self) -> Known:
        """The hub's answer for the request's token (kept: :mod:`.hub_tokens`); 401 without a
        token the hub knows."""
        header = self.request.headers.get("Authorization", "")
        match = self.face.auth.auth_header_pat.match(header)
        if match is None:
            raise web.HTTPError(
                401,
                "no token: send the server's $JUPYTERHUB_API_TOKEN as 'Authorization: token ...'",
            )
        known = await self.face.tokens.lookup(match.group(1).strip())
        model = known.model
        if not model:
            raise web.HTTPError(
                401, "the hub does not know this token (expired, revoked, or of another hub)"
            )
        self.hub_name = f"{model.get('kind', 'user')}:{model.get('name')}"
        return known

    async def hub_model(self) -> dict[str, Any]:
        """The hub's model of the token's owner; 401 without a token the hub knows."""
        model = (await self.hub_known()).model
        assert model is not None  # hub_known refused it otherwise
        return model

    async def hub_user(self) -> HubUser:
        """The hub user the token speaks for: 403 for a service or a token without the
        relay's scope, whose message says what to set. Decided once per hub answer."""
        known = await self.hub_known()
        if known.made is None:
            known.made = self._judge(known.model or {})
        if isinstance(known.made, HubUser):
            return known.made
        raise web.HTTPError(403, "%s", known.made)  # a new error each time: no traceback kept

    def _judge(self, model: dict[str, Any]) -> HubUser | str:
        """The hub user of ``model``, or why they are refused (the 403's message)."""
        if model.get("kind", "user") != "user":
            return f"{SERVICE_REFUSED}; {model.get('name')!r} is a service"
        if not self.face.auth.check_scopes({self.face.scope}, model):
            return missing_scope_message(self.face.scope)
        groups = model.get("groups") or ()
        return HubUser(str(model["name"]), tuple(str(g) for g in groups))

    def json_body(self) -> Any:
        if len(self.request.body) > MAX_BODY_BYTES:
            raise web.HTTPError(413, f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            raise web.HTTPError(400, f"the body is not JSON: {err}") from None


class EventsHandler(RelayHandler):
    async def post(self) -> None:
        user = await self.hub_user()
        envelope = self.json_body()
        try:
            result = await self.face.relay.ingest(user, envelope)
        except InvalidEnvelope as err:
            raise web.HTTPError(400, "%s", err) from None
        except (RelayUnavailable, StoreError) as err:
            # Nothing stored: the server keeps the events and sends them again.
            LOG.warning("relay: envelope of %s not taken: %s", user.name, err)
            raise web.HTTPError(503, "%s", err) from None
        self.ingested = result  # for the metrics (app.make_app's log function)
        body = result.to_dict()
        if self.face.send_every:  # 0: the answer as before (servers send at once)
            body["send_every"] = self.face.send_every
        self.answer(body)


class EventHandler(RelayHandler):
    async def get(self, event_id: str) -> None:
        user = await self.hub_user()
        try:
            found = self.face.relay.lookup(user, event_id)
        except StoreError as err:  # the database is down: "ask again", not a traceback
            raise web.HTTPError(503, "%s", err) from None
        if found is None:
            # The id in the body tells the server's sink this is the relay's own answer,
            # not the hub proxy's 404 for a relay that is not there.
            self.set_status(404)
            self.answer({"id": event_id, "message": f"no event {event_id!r} of yours here"})
            return
        self.answer(found)


class MeHandler(RelayHandler):
    async def get(self) -> None:
        user = await self.hub_user()
        try:
            self.answer(self.face.relay.record(user))
        except StoreError as err:
            raise web.HTTPError(503, "%s", err) from None


class StatusHandler(RelayHandler):
    async def get(self) -> None:
        model = await self.hub_model()
        if not (model.get("admin") is True or "admin:users" in (model.get("scopes") or ())):
            raise web.HTTPError(403, "the relay's status is for hub admins only")
        body = {"service": self.face.service_name, **self.face.relay.status()}
        if self.face.drainer is not None:
            body["delivery"] = await self.face.drainer.read_status()
        self.answer(body)


class HealthHandler(RelayHandler):
    """For probes (and a server checking its relay is there): no auth, nothing private."""

    async def get(self) -> None:
        self.answer({"status": "ok", "service": self.face.service_name})


class CatalogHandler(RelayHandler):
    """The school's catalog, as much of it as anyone may read: courses and activity ids,
    names and expected XP (so a server can say "not in the school's catalog")."""

    async def get(self) -> None:
        self.answer(self.face.relay.catalog.public())


def routes(prefix: str, face: Face) -> list[tuple[str, type[RelayHandler], dict[str, Any]]]:
    """The URL table under the service's prefix (``/services/<name>/``)."""
    kw = {"face": face}
    return [
        (f"{prefix}api/events", EventsHandler, kw),
        (f"{prefix}api/events/(.+)", EventHandler, kw),
        (f"{prefix}api/me", MeHandler, kw),
        (f"{prefix}api/status", StatusHandler, kw),
        (f"{prefix}api/health", HealthHandler, kw),
        (f"{prefix}api/catalog", CatalogHandler, kw),
    ]
