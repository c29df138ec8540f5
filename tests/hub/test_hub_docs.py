"""docs/jupyterhub.md shows the configuration the hub tests run (quick: no hub started)."""

from __future__ import annotations

import re

from timeback_jupyter.config import Timeback
from timeback_jupyter.relay.settings import Relay

from .conftest import DOCS_CONFIG, REPO

PAGE = REPO / "docs" / "jupyterhub.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_shows_the_config_file_the_hub_tests_load() -> None:
    assert DOCS_CONFIG.read_text() in blocks("python")
    text = DOCS_CONFIG.read_text()
    for setting in (
        '"command": ["jupyter", "timeback", "relay"]',
        "c.JupyterHub.extra_user_scopes",
        "c.Spawner.server_token_scopes",
        '"TIMEBACK_RELAY_URL"',
    ):
        assert setting in text


def test_every_setting_the_page_names_exists() -> None:
    names = set(re.findall(r"c\.(Relay|Timeback)\.(\w+)", PAGE.read_text()))
    traits = {"Relay": Relay.class_trait_names(), "Timeback": Timeback.class_trait_names()}
    assert names
    assert [f"c.{cls}.{name}" for cls, name in sorted(names) if name not in traits[cls]] == []


def test_the_readme_points_to_the_page() -> None:
    assert "docs/jupyterhub.md" in (REPO / "README.md").read_text()


def test_the_readmes_images_are_in_the_repository_and_small() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (REPO / "README.md").read_text())
    assert "docs/images/class-overview.png" in images  # made by test_hub_dashboard.py
    for image in images:
        path = REPO / image
        assert path.is_file(), image
        assert path.stat().st_size < 200_000, f"{image}: crop or shrink it"
