"""The class overview page's template context (no tornado here): sort links, the filter form
and the export link, each carrying the view's whole query, so every link keeps the filters and
a filtered view is a URL that can be bookmarked."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from .catalog import Catalog
from .cells import catalog_columns
from .overview import Overview


def _url(base: str, items: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(items)}"


def _state_class(state: str) -> str:
    return "state-" + state.replace(" ", "-")  # live.js and the stylesheet know these names


def context(view: Overview, rows: list[list[str]], base: str, catalog: Catalog) -> dict[str, Any]:
    """What ``overview.html`` needs; ``base`` is the class page's path, ``catalog`` the relay's
    (the form offers every activity of it, the ones shown checked)."""
    chosen = view.filters
    header = []
    for label, key in zip(view.header(), view.sort_keys(), strict=True):
        active = key == chosen.sort
        order = "asc" if not active or chosen.descending else "desc"
        header.append(
            {
                "label": label,
                "key": key,
                "url": _url(base, chosen.query(sort=key, order=order)),
                "aria_sort": (
                    ("descending" if chosen.descending else "ascending") if active else "none"
                ),
            }
        )
    every = catalog_columns(catalog)
    activities = [
        {
            "value": column.key,
            "label": f"{column.name} ({column.course})",
            "checked": column.key in chosen.activities,
            "id": f"f-activity-{i}",
        }
        for i, column in enumerate(every)
    ]
    columns = range(len(view.columns))
    period = chosen.period
    return {
        "view": view,
        "header": header,
        # Each cell with its class attribute made here, not in the template: 800 cells make
        # a Jinja2 lookup or filter per cell cost a millisecond or more a page.
        "rows": [
            {
                "student": r[0],
                "cells": [
                    (_state_class(view.state(r[0], i)), text)
                    for i, text in zip(columns, r[1:], strict=False)
                ]
                + [("", text) for text in r[1 + len(columns) :]],
            }
            for r in rows
        ],
        "sort_label": view.header()[view.sort_keys().index(chosen.sort)],
        "descending": chosen.descending,
        "csv_url": _url(f"{base}/export.csv", chosen.query()),
        "base": base,
        "clear_url": _url(base, [("sort", chosen.sort), ("order", chosen.order)]),
        "form": {
            "activities": activities,
            "day": period.label if period is not None and period.kind == "day" else "",
            "week": period.label if period is not None and period.kind == "week" else "",
            "sorts": [(h["key"], h["label"]) for h in header],
            "sort": chosen.sort,
            "order": chosen.order,
        },
        "period": None if period is None else period.describe(),
        "filtered": bool(chosen.activities) or period is not None,
        "note": chosen.note,
    }
