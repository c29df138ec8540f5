"""The OneRoster users query the official SDK sends to find a student's sourcedId by email."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs


def users_answer(users: Mapping[str, list[str]], query: str) -> tuple[int, Any]:
    """The answer to ``GET .../users?filter=email='...'``: one record per sourcedId of the email."""
    wanted = parse_qs(query).get("filter", [""])[0]
    email = wanted.removeprefix("email='").removesuffix("'").replace("''", "'")
    ids = users.get(email, [])
    return 200, {"users": [{"sourcedId": i, "email": email} for i in ids]}
