"""docs/jupyterhub.md shows the configuration the hub tests run (quick: no hub started)."""

from __future__ import annotations

import re

import yaml

from timeback_jupyter.config import Timeback
from timeback_jupyter.relay import health, metrics
from timeback_jupyter.relay.cookies import COOKIE_SECRET_ENV
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


# -- the district deployment (several replicas + PostgreSQL) -------------------------------------


def documents() -> list[dict]:
    """Every YAML document the page shows, parsed (a block that does not parse fails here)."""
    found = []
    for block in blocks("yaml"):
        found += [doc for doc in yaml.safe_load_all(block) if doc is not None]
    return found


def relay_paths() -> list[str]:
    """The relay's own routes for probes and scrapes, under the docs' service prefix."""
    prefix = "/services/timeback-relay/"
    table = health.routes(prefix, "timeback-relay", None) + metrics.routes(prefix, None, None)  # type: ignore[arg-type]
    return [pattern for pattern, *_ in table]


def test_the_pages_yaml_parses_and_shows_the_replicas_deployment() -> None:
    docs = documents()
    kinds = {doc.get("kind") for doc in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= kinds
    deployment = next(doc for doc in docs if doc.get("kind") == "Deployment")
    assert deployment["spec"]["replicas"] > 1
    external = [  # the chart's values where the relay runs beside the hub, not in it
        doc["hub"]["services"]["timeback-relay"]
        for doc in docs
        if "command"
        not in doc.get("hub", {}).get("services", {}).get("timeback-relay", {"command": 1})
    ]
    (entry,) = external
    url = entry["url"]
    service = next(doc for doc in docs if doc.get("kind") == "Service")
    assert f"//{service['metadata']['name']}." in url  # the hub reaches the Service
    assert str(service["spec"]["ports"][0]["port"]) in url


def test_the_deployments_probes_and_scrape_path_are_the_relays_routes() -> None:
    deployment = next(doc for doc in documents() if doc.get("kind") == "Deployment")
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    probes = {
        "live": container["livenessProbe"]["httpGet"]["path"],
        "ready": container["readinessProbe"]["httpGet"]["path"],
    }
    scrape = template["metadata"]["annotations"]["prometheus.io/path"]
    routes = relay_paths()
    for path in (*probes.values(), scrape):
        assert path in routes, (path, routes)
    assert probes["live"].endswith("/live") and probes["ready"].endswith("/ready")
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(
        container["ports"][0]["containerPort"]
    )
    # The startup probe waits at least as long as a relay waits for its database.
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == probes["live"]
    patience = startup["periodSeconds"] * startup["failureThreshold"]
    assert patience >= Relay().db_wait_seconds


def test_the_deployments_secrets_reach_the_names_the_relay_reads() -> None:
    deployment = next(doc for doc in documents() if doc.get("kind") == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    from_secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {COOKIE_SECRET_ENV, "JUPYTERHUB_API_TOKEN", "TIMEBACK_API_CLIENT_SECRET"} <= (
        from_secrets
    )
    # The DB URL's variable is the one the docs' relay config reads.
    assert 'os.environ["TIMEBACK_RELAY_DB_URL"]' in PAGE.read_text()
    assert "TIMEBACK_RELAY_DB_URL" in from_secrets


def test_the_readme_points_to_the_replicas_section() -> None:
    heading = "### Several relay replicas and PostgreSQL (a district)"
    assert heading in PAGE.read_text()
    anchor = re.sub(r"[^a-z0-9 -]", "", heading.lstrip("# ").lower()).replace(" ", "-")
    assert f"docs/jupyterhub.md#{anchor}" in (REPO / "README.md").read_text()


def test_the_readmes_images_are_in_the_repository_and_small() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (REPO / "README.md").read_text())
    assert "docs/images/class-overview.png" in images  # made by test_hub_dashboard.py
    for image in images:
        path = REPO / image
        assert path.is_file(), image
        assert path.stat().st_size < 200_000, f"{image}: crop or shrink it"
