"""The class overview kept live without a reload: its rows as JSON, and the one script that asks.

The page works without JavaScript; ``static/live.js`` (plain, strict, no build step) asks
``classes/<group>/live?<the page's own query>`` every few seconds and swaps in the rows. The
endpoint is the page's own handler (:class:`Fragments` mixed into ``pages.ClassPage``): the same
access check, the same members, filters and sort read from the same query string, rendered by
the same template; only the answer differs: the template's ``live_*`` blocks as JSON, instead of
the whole page. So the live rows can never show what the page would not, and a filter added to
the page is live with no change here.

Polling, not server-sent events: every answer passes the page's access check again (a teacher
who loses a class stops seeing it), nothing long-lived is held through the hub's proxy per open
tab, any relay replica can answer, and the figures move in the servers' 15 s heartbeat steps, so
a few seconds of delay shows nothing a stream would.

Every page carries a Content-Security-Policy whose only script is the one with this request's
nonce (the tag in ``overview.html``); scripts may call the relay's own origin only.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from functools import cache
from pathlib import Path
from typing import Any

from tornado import web

from .handlers import error_message

STATIC = Path(__file__).with_name("static")
SCRIPT = "live.js"
# The blocks of overview.html a live answer carries: JSON key -> block name.
BLOCKS = {"rows": "live_rows", "working": "live_working"}


def nonce() -> str:
    return secrets.token_urlsafe(18)


def policy(script_nonce: str) -> str:
    """The pages' Content-Security-Policy: the nonce'd script only, nothing from elsewhere.

    Styles may be inline (the pages' one <style> and any ``style`` attribute a template adds);
    everything that can run code or send data is held to the nonce or the relay's origin."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{script_nonce}'",
            "style-src 'unsafe-inline'",
            "img-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


@cache
def script_url(prefix: str) -> str:
    """Where pages load the script from, versioned by its content (cached for a year)."""
    digest = hashlib.sha256((STATIC / SCRIPT).read_bytes()).hexdigest()[:16]
    return f"{prefix}static/{SCRIPT}?v={digest}"


class Script(web.StaticFileHandler):
    """The relay's static files (its one script): no login needed, nothing in it is private."""

    def get_content_type(self) -> str:
        return "text/javascript; charset=utf-8"

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'")


class Fragments(web.RequestHandler):
    """Mixed in before a page handler: answers the ``live_*`` blocks of the template the handler
    renders, as JSON, instead of the page (``{"rows": ..., "working": ...}``, HTML strings)."""

    pages: Any

    def render_page(self, template: str, **context: Any) -> None:
        page = self.pages.templates.get_template(template)
        scope = page.new_context({"prefix": self.pages.prefix, **context})
        body = {key: "".join(page.blocks[block](scope)) for key, block in BLOCKS.items()}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = error_message(self._reason, kwargs.get("exc_info"))
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "error": message}))
