"""Who may see which pages of the relay, decided from the hub's own scopes (no tornado here).

A teacher holds the custom scope ``custom:<service>:read`` filtered to the groups (classes) they
teach (``custom:timeback-relay:read!group=class-a``), granted by a role in the hub's config; the
unfiltered scope, or being a hub admin, shows every class. Everyone else sees their own page only.
The hub config a school needs is built here, so the docs and the hub tests use the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def read_scope(service: str) -> str:
    return f"custom:{service}:read"


@dataclass(frozen=True)
class Viewer:
    """The hub user looking at a page, as far as the pages care.

    ``groups`` is None when every class is visible (admin or the unfiltered scope).
    """

    name: str
    groups: frozenset[str] | None

    @classmethod
    def from_model(cls, model: Mapping[str, Any], service: str) -> Viewer:
        """From the hub's model of an OAuth token: its ``admin`` flag and expanded scopes."""
        scope = read_scope(service)
        groups: set[str] = set()
        everything = model.get("admin") is True
        for held in model.get("scopes") or ():
            if held == scope:
                everything = True
            elif held.startswith(f"{scope}!group="):
                groups.add(held.partition("!group=")[2])
        return cls(str(model["name"]), None if everything else frozenset(groups))

    @property
    def teaches(self) -> bool:
        return self.groups is None or bool(self.groups)

    def may_see_class(self, group: str) -> bool:
        return self.groups is None or group in self.groups

    def may_see_student(self, student: str, classes_of_student: Iterable[str]) -> bool:
        """Their own page always; another's if the student is in a class they may see."""
        if student == self.name or self.groups is None:
            return True
        return any(g in self.groups for g in classes_of_student)


# -- the hub's side -----------------------------------------------------------------------------


def custom_scopes(service: str) -> dict[str, dict[str, str]]:
    """``c.JupyterHub.custom_scopes`` entry for the relay's pages."""
    return {
        read_scope(service): {
            "description": "See the Timeback relay's class overview and students' pages"
        }
    }


def teacher_role(name: str, users: list[str], groups: list[str], service: str) -> dict[str, Any]:
    """A ``c.JupyterHub.load_roles`` entry: ``users`` see the classes ``groups``."""
    return {
        "name": name,
        "description": f"Teachers of {', '.join(groups)} on the Timeback relay",
        "users": users,
        "scopes": [f"{read_scope(service)}!group={g}" for g in groups],
    }


def relay_service_role(service: str) -> dict[str, Any]:
    """The relay's own role: it reads who is in which class from the hub."""
    return {
        "name": f"{service}-service",
        "services": [service],
        "scopes": ["list:groups", "read:groups"],
    }


def service_oauth(service: str) -> dict[str, Any]:
    """What the relay's entry in ``c.JupyterHub.services`` adds for the pages' OAuth login:
    the read scope may reach the relay's tokens (only as far as the user holds it), and a
    school-run service needs no "authorize this app" click."""
    return {"oauth_client_allowed_scopes": [read_scope(service)], "oauth_no_confirm": True}
