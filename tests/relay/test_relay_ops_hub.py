"""Operations against a real JupyterHub, the store on each backend: three relay replicas on
one store (A behind the hub's service URL with JSON logs and the cookie secret from the
environment, B with the same secret from a file, C with a secret of its own and open metrics).
Metrics move with real ingests and ask for ``read:metrics``; JSON log lines carry the request
and no secret; a page login made through A is accepted by B and not by C."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from timeback_jupyter import caliper
from timeback_jupyter.relay.access import custom_scopes, service_oauth
from timeback_jupyter.relay.cookies import COOKIE_SECRET_ENV
from timeback_jupyter.testing.standin import SENSOR, time_spent_events

from . import hub as hub_fixtures
from .hub import (
    ADMIN_TOKEN,
    CLIENT_SECRET,
    PREFIX,
    RELAY_HUB_TOKEN,
    SCOPE,
    SERVICE,
    Hub,
    RelayProcess,
    free_port,
    wait_until,
)

standin = hub_fixtures.standin
pytestmark = pytest.mark.slow

PROMETHEUS_TOKEN = "prometheus-scraper-token-never-logged-0003"
QUERY_SECRET = "query-string-secret-never-logged-0004"
OPS_CONFIG = f"""
c.JupyterHub.custom_scopes = {custom_scopes(SERVICE)!r}
c.JupyterHub.services[0].update({service_oauth(SERVICE)!r})
c.JupyterHub.services.append({{"name": "prometheus", "api_token": {PROMETHEUS_TOKEN!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "prometheus", "services": ["prometheus"], "scopes": ["read:metrics"]}}
)
"""


class Cluster:
    def __init__(self, hub: Hub, a: RelayProcess, b: RelayProcess, c: RelayProcess, secret: str):
        self.hub, self.a, self.b, self.c, self.secret = hub, a, b, c, secret
        self.ada = hub.token("ada", [SCOPE, "users:activity!user=ada"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(request, tmp_path_factory, standin):
    hub = Hub(tmp_path_factory.mktemp("hub"), free_port())
    with open(hub.tmp / "jupyterhub_config.py", "a") as config:
        config.write(OPS_CONFIG)
    secret = secrets.token_hex(32)
    a = RelayProcess(
        tmp_path_factory.mktemp("a"),
        hub,
        standin,
        "--Relay.log_format=json",
        "--Relay.replica_id=replica-a",
    )
    a.extra_env = {COOKIE_SECRET_ENV: secret}
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        a.db_url = server.create_database(f"relay_ops_{free_port()}")
    secret_file = tmp_path_factory.mktemp("secret") / "cookie_secret"
    secret_file.write_text(secret + "\n")
    os.chmod(secret_file, 0o600)
    b_port, c_port = free_port(), free_port()
    b = RelayProcess(
        tmp_path_factory.mktemp("b"),
        hub,
        standin,
        f"--Relay.port={b_port}",
        f"--Relay.cookie_secret_file={secret_file}",
    )
    c = RelayProcess(
        tmp_path_factory.mktemp("c"),
        hub,
        standin,
        f"--Relay.port={c_port}",
        "--Relay.authenticate_prometheus=False",
    )
    b.port, c.port = b_port, c_port
    b.db_url = c.db_url = a.db_url  # replicas of one store
    try:
        for relay in (a, b, c):
            relay.start(via_hub=False)
        hub.start()
        hub.create_user("ada")
        yield Cluster(hub, a, b, c, secret)
    finally:
        for relay in (a, b, c):
            relay.stop()
        hub.stop()


def scrape(relay: RelayProcess, token: str | None = PROMETHEUS_TOKEN) -> dict[tuple, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(f"{relay.direct_url}metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def post(cluster: Cluster, events: list, query: str = "") -> httpx.Response:
    return httpx.post(
        f"{cluster.hub.relay_url}api/events{query}",
        json=caliper.envelope(events, SENSOR, time.time()),
        headers={"Authorization": f"token {cluster.ada}"},
        timeout=30,
    )


def test_metrics_ask_for_a_hub_token_with_read_metrics(cluster):
    url = f"{cluster.a.direct_url}metrics"
    none = httpx.get(url, timeout=30)
    student = httpx.get(url, headers={"Authorization": f"token {cluster.ada}"}, timeout=30)
    assert none.status_code == 401 and "read:metrics" in none.text
    assert student.status_code == 403 and "lacks the 'read:metrics' scope" in student.text
    assert "timeback_relay" not in none.text + student.text
    assert ("timeback_relay_store_up", ()) in scrape(cluster.a)  # the scraper's service token
    assert ("timeback_relay_store_up", ()) in scrape(cluster.c, token=None)  # opened


def test_real_ingests_move_the_counters(cluster):
    def value(seen: dict, name: str, **labels: str) -> float:
        return seen.get((name, tuple(sorted(labels.items()))), 0.0)

    before = scrape(cluster.a)
    start = time.time() - 120
    first = time_spent_events(str(uuid.uuid4()), 3, start=start)
    overlapping = time_spent_events(str(uuid.uuid4()), 1, start=start)  # same 15 s, another run
    assert post(cluster, first).json()["accepted"] == 3
    assert post(cluster, first).json()["duplicate"] == 3
    cut = post(cluster, overlapping).json()
    cut_seconds = cut["events"][0]["cut_seconds"]
    assert cut["accepted"] == 1 and cut_seconds > 0
    assert (
        httpx.post(
            f"{cluster.hub.relay_url}api/events",
            content=b"not json",
            headers={"Authorization": f"token {cluster.ada}"},
            timeout=30,
        ).status_code
        == 400
    )
    after = scrape(cluster.a)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("timeback_relay_envelopes_total", outcome="stored") == 3
    assert moved("timeback_relay_envelopes_total", outcome="invalid") == 1
    assert moved("timeback_relay_events_total", status="accepted") == 4
    assert moved("timeback_relay_events_total", status="duplicate") == 3
    assert moved("timeback_relay_cut_seconds_total") == cut_seconds
    assert moved("timeback_relay_ingest_duration_seconds_count") == 4
    assert value(after, "timeback_relay_store_up") == 1
    # Counters are per process: B served none of it.
    assert value(scrape(cluster.b), "timeback_relay_events_total", status="accepted") == 0


def login(hub: Hub, name: str) -> httpx.Client:
    """The relay's index page as a browser opens it: the hub's OAuth, its login form, back."""
    client = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)
    first = client.get(PREFIX)
    assert urlsplit(str(first.url)).path == "/hub/login", first.url
    page = client.post(
        str(first.url),
        data={"username": name, "password": "any", "_xsrf": client.cookies.get("_xsrf")},
    )
    assert page.status_code == 200 and urlsplit(str(page.url)).path == PREFIX, page.url
    return client


def test_a_page_login_through_one_replica_is_accepted_by_another(cluster):
    browser = login(cluster.hub, "ada")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
    browser.close()

    def open_index(relay: RelayProcess) -> httpx.Response:
        return httpx.get(relay.direct_url, headers={"Cookie": cookie}, timeout=30)

    on_b, on_c = open_index(cluster.b), open_index(cluster.c)
    assert on_b.status_code == 200 and "ada" in on_b.text, on_b.text[:500]
    # A replica with a secret of its own does not know the signature: back to the hub's OAuth.
    assert on_c.status_code == 302
    assert "/hub/api/oauth2/authorize" in on_c.headers["Location"]
    # The access log names the cookie's user (text format on B), not "-".
    assert f"200 GET {PREFIX} (user:ada)" in cluster.b.log_text()


def access_lines(relay: RelayProcess) -> list[dict]:
    lines = [line for line in relay.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    return [r for r in records if "status" in r]


def test_json_logs_carry_the_request_and_no_secret(cluster):
    seen = len(access_lines(cluster.a))  # the lines of the tests before this one
    ok = post(cluster, time_spent_events(str(uuid.uuid4()), 2), f"?token={QUERY_SECRET}")
    assert ok.json()["accepted"] == 2
    refused = httpx.post(
        f"{cluster.hub.relay_url}api/events?token={QUERY_SECRET}",
        content=b"not json",
        headers={"Authorization": f"token {cluster.ada}"},
        timeout=30,
    )
    assert refused.status_code == 400
    login(cluster.hub, "ada").close()
    records = access_lines(cluster.a)[seen:]
    events = [r for r in records if r["method"] == "POST" and r["path"].endswith("api/events")]
    # A refusal has its own line; a successful ingest has none (it is in the summary).
    assert [r["status"] for r in events if "duration_ms" in r] == [400], events
    last = events[-1]
    assert last["path"] == f"{PREFIX}api/events"  # no query string
    assert last["status"] == 400 and last["user"] == "user:ada"
    assert last["replica"] == "replica-a" and last["logger"] == "timeback_jupyter.relay"
    assert last["level"] == "WARNING" and isinstance(last["duration_ms"], float)
    assert last["time"].endswith("+00:00") and last["message"].startswith("400 POST")

    # The page's line is written as its request finishes, maybe after the browser has it.
    def pages() -> list[dict]:
        return [
            r for r in access_lines(cluster.a)[seen:]
            if r["method"] == "GET" and r["path"] == PREFIX and r["status"] == 200
            and r["user"] == "user:ada"
        ]  # fmt: skip

    wait_until(lambda: pages(), "the page's access line naming ada", 10)

    # The successes' summary comes within its interval (10 s): counts and times, no user.
    def summaries() -> list[dict]:
        return [r for r in access_lines(cluster.a)[seen:] if "requests" in r]

    wait_until(lambda: summaries(), "the summary", 30)
    summary = summaries()[-1]
    assert summary["path"] == f"{PREFIX}api/events" and summary["status"] == 200
    assert summary["requests"] >= 1 and summary["events"] >= 2 and summary["accepted"] >= 2
    assert summary["level"] == "INFO" and summary["replica"] == "replica-a"
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] and "user" not in summary
    assert summary["message"].startswith(f"200 POST {PREFIX}api/events: ")
    text = cluster.a.log_text()
    for secret in (
        QUERY_SECRET,
        cluster.ada,
        RELAY_HUB_TOKEN,
        ADMIN_TOKEN,
        PROMETHEUS_TOKEN,
        CLIENT_SECRET,
        cluster.secret,
    ):
        assert secret not in text
