"""Reading ``metadata.timeback`` (upgraded and validated) and merging what we write into it."""

from __future__ import annotations

from typing import Any

from ..model import Activity, InvalidInput
from .versions import (
    CURRENT_VERSION,
    MetadataError,
    NewerVersionError,
    upgrade,
    validator,
    version_of,
)

ROOT = "metadata.timeback"
_KINDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def _show(value: Any, limit: int = 80) -> str:
    """A value as the author wrote it, cut short: a whole pasted cell must not fill the log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(path: Any) -> str:
    out = ROOT
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _problem(error: Any) -> str:
    """One validation error in the author's terms: where, and what is wrong there."""
    where = _where(error.absolute_path)
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if custom:
        # Errors about an object (a missing alternative) name no value; a bad value is shown.
        if error.validator in ("anyOf", "oneOf"):
            return f"{where}: {custom}"
        return f"{where}: {_show(error.instance)} {custom}"
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return f"{where}: {_show(error.instance)} is not one of {choices}"
    if error.validator == "type":
        value = error.validator_value
        wanted = value if isinstance(value, list) else [value]
        kinds = " or ".join(_KINDS.get(k, k) for k in wanted if isinstance(k, str))
        return f"{where}: must be {kinds}, got {_show(error.instance)}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{where}.{missing}: required"
    # jsonschema's own words start with the value: cut it short as well
    message = error.message
    shown = repr(error.instance)
    if message.startswith(shown) and len(shown) > 80:
        message = _show(error.instance) + message[len(shown) :]
    return f"{where}: {message}"


def problems(section: dict[str, Any], version: int) -> list[str]:
    """Every problem of ``section`` against the schema of ``version``, ordered by where it is.

    Problems inside ``run`` are left out: the run is timeback-jupyter's own record, and one it
    cannot use (a hand edit, a merge conflict) is ignored with a note and a new attempt starts.
    """
    found = [
        error
        for error in validator(version).iter_errors(section)
        if not (error.absolute_path and error.absolute_path[0] == "run")
    ]
    found.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [_problem(error) for error in found]


def read(section: Any, where: str | None = None) -> dict[str, Any] | None:
    """``section`` (a notebook's ``metadata.timeback``) as a new current-version dict.

    None when the notebook declares nothing. Raises :class:`NewerVersionError` for a section of
    a newer timeback-jupyter and :class:`MetadataError` naming every problem otherwise; ``where``
    (the notebook's path) starts the message. The section itself is never changed.
    """
    if section is None:
        return None
    if not isinstance(section, dict):
        raise MetadataError([f"{ROOT}: must be an object, got {_show(section)}"], where)
    version = version_of(section, where)
    # Checked in the version it was written in, so problems are named in the author's terms.
    found = problems(section, version)
    if found:
        raise MetadataError(found, where)
    upgraded = upgrade(section, version)
    if version != CURRENT_VERSION:
        # The steps only rename and add: a failure here is a bug in a step, said as such.
        found = problems(upgraded, CURRENT_VERSION)
        if found:
            raise MetadataError([f"upgrading schema_version {version}: {p}" for p in found], where)
    return upgraded


def check(section: Any) -> list[str]:
    """Every problem of ``section`` (a notebook's ``metadata.timeback``) in the author's terms,
    none when it is usable or absent: what :func:`read` refuses (not an object, a version that
    is none or newer, every schema problem at once) and what the activity it declares breaks of
    the model's own rules the schema cannot say. For authors (``jupyter timeback doctor``)."""
    try:
        upgraded = read(section)
    except MetadataError as err:
        return list(err.problems)
    if upgraded is None or upgraded.get("activity") is None:
        return []
    try:
        Activity.from_dict(upgraded["activity"], f"{ROOT}.activity")
    except InvalidInput as err:
        # the model names its fields from the activity ("activity.name", "course.grade")
        text = str(err)
        if text.startswith("course"):
            text = f"activity.{text}"
        return [text if text.startswith(ROOT) else f"{ROOT}.{text}"]
    return []


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        previous = out.get(key)
        if isinstance(previous, dict) and isinstance(value, dict):
            out[key] = _merged(previous, value)
        else:
            out[key] = value
    return out


def _same(old: Any, new: Any) -> bool:
    return isinstance(old, dict) and isinstance(new, dict) and old.get("id") == new.get("id")


def merge(existing: Any, ours: dict[str, Any], where: str | None = None) -> dict[str, Any]:
    """The section to save: ``existing`` (upgraded) with ``ours`` (a current-version section)
    written over it, keeping every key we do not write.

    Inside ``activity`` and ``run`` keys merge too (ours win) as long as it is the same activity
    or run (same ``id``): a different one replaces the old whole, since the keys another tool
    put there described the old one. A section of a newer version raises
    :class:`NewerVersionError`: we cannot know what writing over it would lose. A section that is
    not an object, or whose version is not one, is replaced.
    """
    if not isinstance(existing, dict):
        return _merged({}, ours)
    try:
        base = upgrade(existing, version_of(existing, where))
    except NewerVersionError:
        raise
    except MetadataError:
        base = dict(existing)
    out = dict(base)
    for key, value in ours.items():
        if key in ("activity", "run") and _same(base.get(key), value):
            out[key] = _merged(base[key], value)
        else:
            out[key] = value
    return out
