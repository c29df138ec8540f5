"""A notebook's ``metadata.timeback`` put into its JSON text, the rest kept byte for byte.

Saving a notebook through its model re-serializes every cell (nbformat's layout, its version
upgrades, its validation fixes): a student's file would change in places we never meant to
touch. Where the contents manager keeps plain files, :mod:`.notebooks` edits the text instead:
the section's value is replaced (or added as a member of ``metadata``) in the layout the file
already has, and the result is checked to parse to exactly the notebook with the new section.
Anything unexpected gives None, and the caller saves through the model as before.
"""

from __future__ import annotations

import copy
import json
import re
from json.decoder import scanstring
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
KEY = "timeback"


class _Layout(ValueError):
    """The text is not laid out as this module edits it."""


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _object(text: str, i: int) -> tuple[list[tuple[str, int, int, int]], int]:
    """The members of the JSON object at ``text[i]`` as (key, key start, value start, value
    end), and where its closing brace is."""
    if text[i : i + 1] != "{":
        raise _Layout("not an object")
    members = []
    i = _skip(text, i + 1)
    if text[i : i + 1] == "}":
        return members, i
    while True:
        if text[i : i + 1] != '"':
            raise _Layout("a key expected")
        key, j = scanstring(text, i + 1)
        j = _skip(text, j)
        if text[j : j + 1] != ":":
            raise _Layout("':' expected")
        start = _skip(text, j + 1)
        _, end = _DECODER.raw_decode(text, start)
        members.append((key, i, start, end))
        i = _skip(text, end)
        if text[i : i + 1] == ",":
            i = _skip(text, i + 1)
        elif text[i : i + 1] == "}":
            return members, i
        else:
            raise _Layout("',' or '}' expected")


def _line_indent(text: str, i: int) -> str:
    start = text.rfind("\n", 0, i) + 1
    line = text[start:i]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _value(section: Any, indent: str, unit: str | None, sort_keys: bool) -> str:
    """``section`` as JSON in the file's layout, its lines after the first at ``indent``."""
    if unit is None:
        return json.dumps(section, ensure_ascii=False, sort_keys=sort_keys)
    dumped = json.dumps(
        section, indent=unit, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ": ")
    )
    return dumped.replace("\n", "\n" + indent)


def _splice(text: str, section: Any) -> str:
    top = _skip(text, 0)
    members, _ = _object(text, top)
    metadata = [m for m in members if m[0] == "metadata"]
    if not metadata:
        raise _Layout("no metadata")
    _, meta_key, meta_start, _ = metadata[-1]  # JSON readers keep the last of a repeated key
    inner, close = _object(text, meta_start)
    keys = [m[0] for m in members]
    sort_keys = keys == sorted(keys)  # nbformat writes keys sorted: so does this
    meta_indent = _line_indent(text, meta_key)
    # the indentation step of the file: nbformat's is one space; None when on one line
    unit: str | None = None
    if inner:
        first = inner[0][1]
        if "\n" in text[meta_start:first]:
            unit = _line_indent(text, first)[len(meta_indent) :] or None
    elif "\n" in text[top:meta_key]:
        unit = meta_indent[len(_line_indent(text, top)) :] or None
    member_indent = meta_indent + (unit or "")
    value = _value(section, member_indent, unit, sort_keys)
    ours = [m for m in inner if m[0] == KEY]
    if ours:
        _, _, start, end = ours[-1]
        return text[:start] + value + text[end:]
    gap = "\n" + member_indent if unit is not None else " "
    member = json.dumps(KEY) + ": " + value
    if not inner:
        if unit is None:
            return text[: meta_start + 1] + member + text[close:]
        return text[: meta_start + 1] + gap + member + "\n" + meta_indent + text[close:]
    inner_keys = [m[0] for m in inner]
    if inner_keys == sorted(inner_keys):  # kept in order: ours goes where nbformat puts it
        after = next((m for m in inner if m[0] > KEY), None)
        if after is not None:
            return text[: after[1]] + member + "," + gap + text[after[1] :]
    last_end = inner[-1][3]
    return text[:last_end] + "," + gap + member + text[last_end:]


def with_section(text: str, notebook: dict[str, Any], section: Any) -> str | None:
    """``text`` (the file ``notebook`` was parsed from) with ``metadata.timeback`` set to
    ``section`` and nothing else changed; None if that cannot be done in place."""
    try:
        result = _splice(text, section)
        expected = copy.copy(notebook)
        expected["metadata"] = {**notebook.get("metadata", {}), KEY: section}
        if json.loads(result) != expected:
            return None
    except (_Layout, ValueError, TypeError, RecursionError):
        return None
    return result
