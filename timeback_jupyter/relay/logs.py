"""The relay's log: readable lines by default, or one JSON object per line for a collector
(``c.Relay.log_format = "json"``).

A JSON record has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and ``replica``;
an access record adds ``method``, ``path`` (never the query string), ``status``,
``duration_ms`` and ``user`` (the hub's ``user:<name>`` / ``service:<name>``, or null). The
successful ingests have no line each: their summary (:mod:`.traffic`) adds ``method``,
``path``, ``status`` 200, ``requests``, ``events``, ``accepted``, ``duplicate``, ``refused``,
``p50_ms``, ``p99_ms`` and ``interval_s``. The fields are whatever the relay's code put there:
no header, cookie or body is ever read into a record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from .traffic import SUMMARY_FIELDS

TEXT_FORMAT = "[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
REQUEST_FIELDS = ("method", "path", "status", "duration_ms", "user")
FIELDS = tuple(dict.fromkeys((*REQUEST_FIELDS, *SUMMARY_FIELDS)))
# A query string as tornado's own records write a request (``GET /p?token=... (ip)``).
_QUERY = re.compile(r"(?<=\S)\?[^\s'\")]*=[^\s'\")]*")


class NoQueryStrings(logging.Filter):
    """Tornado's records of an uncaught exception or a bad request name the request's URI with
    its query string, where a token someone put there would be written down: cut it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("tornado"):
            record.msg = _QUERY.sub("?...", record.getMessage())
            record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "replica": self.replica,
        }
        for field in FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(log_format: str, level: int, replica: str) -> None:
    """The root logger writes to stderr in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(replica))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(NoQueryStrings())
    logging.basicConfig(level=level, handlers=[handler], force=True)
