"""The versions of ``metadata.timeback``: a JSON Schema file each, and a step from each to the next.

A new version is one more schema file (``schemas/v<N>.json``), one more step in ``STEPS`` and
``CURRENT_VERSION`` raised by one; ``read`` then carries every older notebook up the chain.
jsonschema is imported on first validation only: the standalone kernel builds metadata
(through the tracker) without ever validating it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import Any

CURRENT_VERSION = 2
# A section without schema_version (an author's hand-written declaration) is version 1.
IMPLICIT_VERSION = OLDEST_VERSION = 1


class MetadataError(ValueError):
    """``metadata.timeback`` cannot be used. ``problems`` names each problem and where it is."""

    def __init__(self, problems: list[str], where: str | None = None) -> None:
        self.problems = problems
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(prefix + "; ".join(problems))


class NewerVersionError(MetadataError):
    """The section was written by a newer timeback-jupyter: neither read nor written over."""

    def __init__(self, version: int, where: str | None = None) -> None:
        self.version = version
        super().__init__(
            [
                "metadata.timeback was made by a newer timeback-jupyter (schema_version "
                f"{version}; this one reads up to {CURRENT_VERSION}): upgrade timeback-jupyter"
            ],
            where,
        )


def version_of(section: dict[str, Any], where: str | None = None) -> int:
    """The section's schema_version, refusing a newer one and any that is not a version."""
    if "schema_version" not in section:
        return IMPLICIT_VERSION
    version = section["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise MetadataError(
            [
                "metadata.timeback.schema_version: must be a whole number "
                f"({OLDEST_VERSION} to {CURRENT_VERSION}), got {repr(version)[:80]}"
            ],
            where,
        )
    if version > CURRENT_VERSION:
        raise NewerVersionError(version, where)
    if version < OLDEST_VERSION:
        raise MetadataError(
            [
                f"metadata.timeback.schema_version: {version} is no version of timeback-jupyter's "
                f"(they are {OLDEST_VERSION} to {CURRENT_VERSION})"
            ],
            where,
        )
    return version


@cache
def schema(version: int) -> dict[str, Any]:
    """The JSON Schema of ``version``, shipped in the package."""
    text = files(__package__).joinpath("schemas", f"v{version}.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def validator(version: int) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(version))


def _v1_to_v2(section: dict[str, Any]) -> dict[str, Any]:
    """Version 2 adds ``activity.xp`` and ``activity.mastery_threshold`` (nothing to carry) and
    keeps one spelling per fact: version 1 also read ``model: "stateful"`` and ``courseCode``."""
    activity = section.get("activity")
    if isinstance(activity, dict):
        if "model" in activity:
            model = activity.pop("model")
            # As version 1 read it: stateful, when given, wins over model.
            activity.setdefault("stateful", model == "stateful")
        course = activity.get("course")
        if isinstance(course, dict) and "courseCode" in course:
            code = course.pop("courseCode")
            course.setdefault("code", code)
    return section


# STEPS[n] turns a version-n section into version n+1. Each step may change the copy it gets.
STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def upgrade(section: dict[str, Any], version: int) -> dict[str, Any]:
    """A copy of ``section`` (of ``version``) carried up to ``CURRENT_VERSION``; unknown keys
    stay where they are. The section is not validated: ``read`` does that."""
    upgraded = copy.deepcopy(section)
    for step in range(version, CURRENT_VERSION):
        upgraded = STEPS[step](upgraded)
        upgraded["schema_version"] = step + 1
    return upgraded
