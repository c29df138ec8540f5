"""What every test module that drives Debian's Chromium through Playwright's sync API shares.

A module imports the two fixtures by name (pytest takes fixtures from a module's namespace):
``from tests.chromium import jp_asyncio_loop, jp_server_cleanup  # noqa: F401``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def skip_without_chromium() -> None:
    """Skip where Chromium cannot exist; on CI (``CI=true``) its absence fails the test."""
    if os.environ.get("CI") != "true" and not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI=true runs this")


# pytest-jupyter's autouse fixtures would close Playwright's event loop, and clean up an
# in-process server these tests never start (their servers are subprocesses).
@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    yield
