"""What goes wrong identifying a student: each message says what to set or what failed."""

from __future__ import annotations


class IdentityError(ValueError):
    """The student cannot be identified; the message says what to set or what went wrong."""


class IdentityLookupError(IdentityError):
    """The OneRoster lookup itself failed. ``retryable``: a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
