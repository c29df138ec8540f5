"""``jupyter timeback doctor NOTEBOOK...``: an author's check of each notebook's
``metadata.timeback``, every problem named where it is, as the server would refuse it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import notebook_metadata

OK, FAIL, SKIP = "\u2713", "\u2717", "-"


def _section(path: Path) -> tuple[bool, Any]:
    """(declared, section) of the notebook at ``path``; OSError or ValueError if unreadable."""
    data = json.loads(path.read_text(encoding="utf-8"))
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError("not a notebook (no metadata object)")
    return "timeback" in metadata, metadata.get("timeback")


def check_notebooks(paths: Sequence[str], say: Callable[[str], None] = print) -> int:
    """Check each notebook, one line per problem (``✗ PATH: problem``) or one saying it is
    fine; how many notebooks have problems."""
    failed = 0
    for name in paths:
        try:
            declared, section = _section(Path(name))
        except (OSError, ValueError) as err:
            failed += 1
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            say(f"{FAIL} {name}: cannot be read as a notebook ({reason})")
            continue
        if not declared:
            say(f"{SKIP} {name}: declares no activity (no metadata.timeback)")
            continue
        found = notebook_metadata.check(section)
        if found:
            failed += 1
            for problem in found:
                say(f"{FAIL} {name}: {problem}")
            continue
        activity = (notebook_metadata.read(section) or {}).get("activity")
        if activity is None:
            say(f"{SKIP} {name}: metadata.timeback declares no activity")
        else:
            say(f"{OK} {name}: activity {activity['id']!r} ({_course(activity)}) is valid")
    return failed


def _course(activity: dict[str, Any]) -> str:
    course = activity.get("course") or {}
    if course.get("code"):
        return f"course {course['code']}"
    return f"{course.get('subject', 'Other')} grade {course.get('grade')}"
