"""The activity of ``%timeback start`` with no arguments when the notebook's metadata has none.

Timeback's ``timeback.config.json`` lists courses, not activities, so notebooks declare theirs in
a section of that file that the official SDK ignores::

    "jupyter": {"activities": [
        {"notebook": "quiz.ipynb", "id": "fractions-quiz", "name": "Fractions quiz",
         "course": {"subject": "Math", "grade": 3}, "stateful": false}
    ]}

The file is the first ``timeback.config.json`` found from the kernel's working directory (the
notebook's folder) upwards; the Jupyter server reads the one in its root, which is on that way.
An entry is the notebook's when its ``notebook`` is the notebook's path as the server names it,
or that path's file name. When no entry names the notebook, a single entry without ``notebook``
is every notebook's. Two entries naming the notebook are an error; no entry, or several without
``notebook``, declare nothing: the magic says so.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from ..model import Activity, InvalidInput

# Also in timeback_jupyter.config; kernel/ imports only the model.
CONFIG_FILE_NAME = "timeback.config.json"


class ConfigActivityError(ValueError):
    """timeback.config.json declares this notebook's activity wrongly; one line says where."""


def find_config(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def _entries(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigActivityError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise ConfigActivityError(f"{path}: invalid JSON ({err})") from None
    section = data.get("jupyter") if isinstance(data, dict) else None
    if section is None:
        return []
    activities = section.get("activities") if isinstance(section, dict) else None
    if not isinstance(activities, list):
        raise ConfigActivityError(f"{path}: 'jupyter.activities' must be a list")
    return activities


def _names(entry: dict[str, Any], notebook: str | None) -> bool:
    named = entry.get("notebook")
    if notebook is None or not isinstance(named, str):
        return False
    return named.strip().lstrip("/") in (notebook, PurePosixPath(notebook).name)


def activity_for(notebook: str | None, start: Path) -> tuple[Activity, Path] | None:
    """The activity declared for ``notebook`` and the file declaring it; None if none is."""
    path = find_config(start)
    if path is None:
        return None
    entries = _entries(path)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigActivityError(f"{path}: jupyter.activities[{i}] must be an object")
    named = [e for e in entries if _names(e, notebook)]
    if len(named) > 1:
        raise ConfigActivityError(f"{path}: {len(named)} activities name {notebook}: keep one")
    if not named:
        named = [e for e in entries if "notebook" not in e]
    if len(named) != 1:
        return None
    try:
        return Activity.from_dict(named[0], "jupyter.activities[]"), path
    except InvalidInput as err:
        raise ConfigActivityError(f"{path}: {err}") from None
