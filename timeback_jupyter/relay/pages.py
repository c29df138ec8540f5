"""The relay's pages for people: a class overview (and its CSV) for teachers, each student's own
record, logged in with the hub's OAuth (``HubOAuthenticated``) beside the token API.

Every page asks :class:`access.Viewer` whether this hub user may see it, server-side; who is in
which class is the hub's answer (``GET /groups/<name>`` with the relay's token, which needs
``read:groups``), cached briefly. The data comes from :mod:`views`; the HTML from the Jinja2
templates shipped beside this module.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

import jinja2
from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from markupsafe import Markup
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from . import activity_view, charts, filters, live, overview_page, views
from . import export as export_csv
from .access import Viewer
from .handlers import Face, error_message

LOG = logging.getLogger("timeback_jupyter.relay")
GROUPS_CACHE_SECONDS = 30.0


class Pages:
    """What the page handlers share: the face, the OAuth client, templates, the hub's groups."""

    def __init__(self, face: Face, prefix: str) -> None:
        self.face, self.prefix = face, prefix
        auth = face.auth
        self.oauth = HubOAuth(
            api_token=auth.api_token,
            api_url=auth.api_url,
            base_url=prefix,
            access_scopes=set(auth.access_scopes),
            cache_max_age=auth.cache_max_age,
        )
        if not self.oauth.oauth_client_id:
            # The hub's own default for a service's OAuth client.
            self.oauth.oauth_client_id = f"service-{face.service_name}"
        # Signs the login cookie; a restarted relay sends users through the hub's OAuth again,
        # which is silent while they are logged in to the hub.
        self.cookie_secret = secrets.token_bytes(32)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("timeback_jupyter.relay", "templates"),
            autoescape=True,
        )
        self._groups: dict[str, tuple[float, list[str] | None]] = {}

    async def _hub_get(self, path: str) -> Any:
        request = HTTPRequest(
            f"{self.oauth.api_url.rstrip('/')}/{path}",
            headers={"Authorization": f"token {self.oauth.api_token}"},
            request_timeout=20,
        )
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body)

    async def members(self, group: str) -> list[str] | None:
        """The users of hub group ``group``; None if the hub has no such group."""
        cached = self._groups.get(group)
        if cached is not None and time.monotonic() - cached[0] < GROUPS_CACHE_SECONDS:
            return cached[1]
        try:
            found: list[str] | None = list(
                (await self._hub_get(f"groups/{quote(group, safe='')}"))["users"]
            )
        except HTTPClientError as err:
            if err.code == 404:
                found = None
            elif err.code == 403:
                raise web.HTTPError(
                    503,
                    "the relay may not read the hub's groups: give its service a role with "
                    "the scopes 'list:groups' and 'read:groups'",
                ) from None
            else:
                raise
        self._groups[group] = (time.monotonic(), found)
        return found

    async def all_groups(self) -> list[str]:
        return sorted(g["name"] for g in await self._hub_get("groups"))


class PageHandler(HubOAuthenticated, web.RequestHandler):
    pages: Pages

    def initialize(self, pages: Pages) -> None:
        self.pages = pages
        self.hub_auth = pages.oauth
        # tornado signs cookies with the application's secret; the API face has none.
        self.application.settings.setdefault("cookie_secret", pages.cookie_secret)
        self.hub_name: str | None = None  # for the access log

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.csp_nonce = live.nonce()
        self.set_header("Content-Security-Policy", live.policy(self.csp_nonce))

    async def prepare(self) -> None:
        # Ask the hub asynchronously (HubAuthenticated.get_current_user would block the loop).
        model = await self.hub_auth.get_user(self, sync=False)
        if model:
            try:
                model = self.check_hub_user(model)
            except UserNotAllowed:
                raise web.HTTPError(403, "your hub account may not use this service") from None
            self.hub_name = f"{model.get('kind', 'user')}:{model.get('name')}"
        self._hub_auth_user_cache = model or None

    def viewer(self) -> Viewer:
        model = self.current_user
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "these pages are for hub users, not services")
        return Viewer.from_model(model, self.pages.face.service_name)

    def render_page(self, template: str, **context: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        page = self.pages.templates.get_template(template)
        self.finish(
            page.render(
                prefix=self.pages.prefix,
                csp_nonce=self.csp_nonce,
                live_script=live.script_url(self.pages.prefix),
                # a script's fetch must send it back: the hub's OAuth takes no cookie without it
                xsrf_token=self.xsrf_token.decode(),
                **context,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = error_message(self._reason, kwargs.get("exc_info"))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        page = self.pages.templates.get_template("error.html")
        self.finish(
            page.render(
                prefix=self.pages.prefix, status=status_code, reason=self._reason, message=message
            )
        )

    async def classes_of(self, student: str, viewer: Viewer) -> list[str]:
        """The classes ``viewer`` may see that ``student`` is in."""
        groups = await self.pages.all_groups() if viewer.groups is None else viewer.groups
        return [g for g in sorted(groups) if student in (await self.pages.members(g) or ())]


class IndexPage(PageHandler):
    @web.authenticated
    async def get(self) -> None:
        viewer = self.viewer()
        if viewer.groups is None:
            classes = await self.pages.all_groups()
        else:
            classes = sorted(viewer.groups)
        self.render_page("index.html", viewer=viewer, classes=classes)


class ClassPage(PageHandler):
    """``classes/<group>`` (HTML) and ``classes/<group>/export.csv``: the same rows under the
    same filters and sort, read from the same query (``filters.py``)."""

    async def class_view(self, group: str) -> views.Overview:
        """``group``'s overview under this request's filters, if this viewer may see it."""
        if not self.viewer().may_see_class(group):
            raise web.HTTPError(403, f"you may not see class {group!r}")
        students = await self.pages.members(group)
        if students is None:
            raise web.HTTPError(404, f"the hub has no group {group!r}")
        relay = self.pages.face.relay
        query = {name: self.get_query_arguments(name) for name in filters.NAMES}
        try:
            chosen = filters.parse(query, views.catalog_columns(relay.catalog))
        except filters.FilterError as err:
            raise web.HTTPError(400, "%s", err) from None
        live = views.live_window(self.pages.face.send_every)  # servers paced by the relay
        return views.overview(relay.db, relay.catalog, group, students, relay.now(), chosen, live)

    @web.authenticated
    async def get(self, group: str, export: str | None = None) -> None:
        view = await self.class_view(group)
        rows = view.rows()
        if export:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in group)
            filename = f"timeback-{name}{view.filters.slug()}.csv"
            self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
            self.finish(export_csv.csv_text(view.header(), rows))
            return
        base = f"{self.pages.prefix}classes/{quote(group, safe='')}"
        page = overview_page.context(view, rows, base, self.pages.face.relay.catalog)
        send_every = self.pages.face.send_every
        self.render_page("overview.html", viewer=self.viewer(), send_every=send_every, **page)


class StudentPage(PageHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        viewer = self.viewer()
        if (
            name != viewer.name
            and viewer.groups is not None  # else every student is visible: ask the hub nothing
            and not viewer.may_see_student(name, await self.classes_of(name, viewer))
        ):
            raise web.HTTPError(403, "you may see your own page only")
        face = self.pages.face
        live = views.live_window(face.send_every)  # servers paced by the relay
        relay = face.relay
        view = views.student(relay.db, relay.catalog, name, relay.now(), live_seconds=live)
        chart = charts.bar_chart(view.days, f"Active time per day of {name}", "days")
        self.render_page(
            "student.html",
            viewer=viewer,
            view=view,
            chart=Markup(chart),  # built by charts.py, every value escaped there
            active=views.duration(view.active_seconds),
            cut=views.duration(view.cut_seconds),
        )


class LiveRows(live.Fragments, ClassPage):
    """``classes/<group>/live``: the overview's rows as JSON, checked as the page is."""


class ActivityPage(PageHandler):
    """``activities/<id>``: time to completion against the expected XP, over the students of
    the classes the viewer may see (every student for an admin). Students get 403: a
    distribution of a few classmates all but names them, and their own runs are on their page."""

    @web.authenticated
    async def get(self, slug: str) -> None:
        viewer = self.viewer()
        if not viewer.teaches:
            raise web.HTTPError(
                403, "the activity pages are for teachers; your own runs are on your page"
            )
        relay = self.pages.face.relay
        try:
            course, listed = activity_view.find(
                relay.catalog, slug, self.get_argument("course", None)
            )
        except activity_view.NotFound as err:
            raise web.HTTPError(404, "%s", err) from None
        except activity_view.Ambiguous as err:
            raise web.HTTPError(400, "%s", err) from None
        students: set[str] | None = None
        scope = "every student the relay has recorded (you may see every class)"
        if viewer.groups is not None:
            classes = sorted(viewer.groups)
            students = set()
            for group in classes:
                students.update(await self.pages.members(group) or ())
            plural = "" if len(students) == 1 else "s"
            scope = f"the {len(students)} student{plural} of {', '.join(classes)}"
        view = activity_view.activity(
            relay.db, course, listed, students, scope=scope, policy=relay.rules.policy
        )
        quartiles = view.quartiles()
        chart = charts.histogram(
            [(b.low, b.high, b.count) for b in view.bins],
            [(view.expected_xp, "expected"), (view.wasteful_minutes, "wasteful")],
            f"Active minutes to completion of {view.name}",
        )
        self.render_page(
            "activity.html",
            viewer=viewer,
            view=view,
            chart=Markup(chart),  # built by charts.py, every value escaped there
            quartiles=None if quartiles is None else [activity_view.minutes(q) for q in quartiles],
        )


class OAuthCallback(HubOAuthCallbackHandler):
    def initialize(self, pages: Pages) -> None:
        self.hub_auth = pages.oauth
        self.application.settings.setdefault("cookie_secret", pages.cookie_secret)


def routes(prefix: str, face: Face) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    kw = {"pages": Pages(face, prefix)}
    return [
        (prefix, IndexPage, kw),
        (f"{prefix}oauth_callback", OAuthCallback, kw),
        (f"{prefix}classes/([^/]+)", ClassPage, kw),
        (f"{prefix}classes/([^/]+)/(export\\.csv)", ClassPage, kw),
        (f"{prefix}classes/([^/]+)/live", LiveRows, kw),
        (f"{prefix}static/(.+)", live.Script, {"path": str(live.STATIC)}),
        (f"{prefix}students/([^/]+)", StudentPage, kw),
        (f"{prefix}activities/([^/]+)", ActivityPage, kw),
    ]
