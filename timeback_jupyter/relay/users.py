"""Who sent an event: the hub user the hub vouched for, and the Caliper actor the relay makes of
them. Nothing a student's server sends (an actor, an email, a student id) is ever read."""

from __future__ import annotations

from dataclasses import dataclass

from ..caliper import Actor, user_url
from ..identity import ActorResolver, IdentityError, Student, placeholder_sourced_id

_PLACEHOLDERS = ("{name}", "{username}")
MAX_NAME = 255  # schema.hub_users.name
MAX_CACHED = 200_000


@dataclass(frozen=True)
class HubUser:
    """A user as the hub's API answered for a token (``kind == "user"``)."""

    name: str
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("HubUser.name: required (the hub user's name)")
        if len(self.name) > MAX_NAME:
            # The store's column; one too long must fail here, not a shared transaction.
            raise ValueError(f"HubUser.name: longer than {MAX_NAME} characters")
        object.__setattr__(self, "groups", tuple(self.groups))


class UserDirectory:
    """Hub users to Caliper actors.

    The email comes from ``email_template`` (``"{name}@school.edu"``; ``{username}`` works as
    in ``c.Timeback.student_email_template``). The OneRoster sourcedId is looked up by email
    through ``resolver`` (the relay's own credentials, once per user and process); with no
    resolver (the local sink) it is the placeholder a server uses, ``local-<key>``.
    """

    def __init__(
        self,
        email_template: str,
        oneroster_base_url: str,
        resolver: ActorResolver | None = None,
    ) -> None:
        if not isinstance(email_template, str) or not any(
            p in email_template for p in _PLACEHOLDERS
        ):
            raise IdentityError(
                f"the relay's email_template {email_template!r} must contain {{name}} (the hub "
                "user's name), e.g. '{name}@school.edu'"
            )
        self.email_template = email_template.strip()
        self.oneroster_base_url = oneroster_base_url
        self.resolver = resolver
        # Every envelope needs its sender's actor: made once per user (the resolver never
        # forgets a sourcedId either), the address checked then.
        self._actors: dict[str, Actor] = {}

    def email_for(self, user: HubUser) -> str:
        try:
            email = self.email_template.format(name=user.name, username=user.name)
        except (KeyError, IndexError, ValueError) as err:
            raise IdentityError(
                f"the relay's email_template {self.email_template!r} cannot be filled: the only "
                f"placeholder is {{name}} ({type(err).__name__}: {err})"
            ) from None
        return Student(email).email  # checked: an IdentityError names a bad address

    async def actor_for(self, user: HubUser) -> Actor:
        """The actor every event of ``user`` carries.

        Raises ``IdentityError`` (or its ``IdentityLookupError``) when the user cannot be
        found: the relay answers that envelope with a retryable error, never a guess.
        """
        actor = self._actors.get(user.name)
        if actor is not None:
            return actor
        student = Student(self.email_for(user))
        if self.resolver is None:
            sourced = placeholder_sourced_id(student)
            actor = Actor(id=user_url(self.oneroster_base_url, sourced), email=student.email)
        else:
            actor = await self.resolver.resolve(student)
        if len(self._actors) >= MAX_CACHED:
            self._actors.clear()  # a district's users fit; a leak never grows
        self._actors[user.name] = actor
        return actor
