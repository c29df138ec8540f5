"""timeback.config.json is resolved and validated by the official server SDK's rules."""

import json

import pytest
from timeback.server.timeback import (
    AppConfig as SdkAppConfig,
)
from timeback.server.timeback import (
    ConfigValidationError,
    _load_config,
    _resolve_course_for_env,
    _validate_config,
)

from timeback_jupyter.config import (
    LOCAL_SENSOR,
    ONEROSTER_BASE_URLS,
    ConfigError,
    Credentials,
    Timeback,
    load_app_config,
    parse_app_config,
)
from timeback_jupyter.model import CourseRef

GOOD = {
    "name": "Notebook Academy",
    "sensor": "https://nb.example.edu",
    "launchUrl": "https://nb.example.edu/start",
    "courses": [
        {
            "subject": "Math",
            "grade": 3,
            "ids": {"staging": "m3-stg", "production": "m3-prd"},
            "metadata": {"metrics": {"totalLessons": 12}},
        },
        {
            "subject": "Other",
            "courseCode": "CS-101",
            "ids": {"staging": "cs-stg"},
            "overrides": {"production": {"sensor": "https://prod.example.edu"}},
        },
    ],
}

# Files the SDK accepts or refuses; ours must decide the same.
CASES = {
    "good": GOOD,
    "no grade nor code": {"sensor": "https://a.b", "courses": [{"subject": "Math"}]},
    "duplicate pair": {
        "sensor": "https://a.b",
        "courses": [{"subject": "Math", "grade": 3}, {"subject": "Math", "grade": 3}],
    },
    "duplicate code": {
        "sensor": "https://a.b",
        "courses": [
            {"subject": "Math", "courseCode": "X"},
            {"subject": "Reading", "courseCode": "X"},
        ],
    },
    "no sensor": {"courses": [{"subject": "Math", "grade": 3}]},
    "sensor from launchUrl": {
        "launchUrl": "https://x.example/launch/here",
        "courses": [{"subject": "Math", "grade": 4}],
    },
    "per-course sensor": {"courses": [{"subject": "Math", "grade": 5, "sensor": "https://c.d"}]},
    "per-course launchUrl": {
        "courses": [{"subject": "Math", "grade": 5, "launchUrl": "https://e.f/x"}]
    },
    "env override sensor": {
        "courses": [
            {"subject": "Math", "grade": 5, "overrides": {"staging": {"sensor": "https://g.h"}}}
        ]
    },
    "override for the other env only": {
        "courses": [
            {"subject": "Math", "grade": 5, "overrides": {"production": {"sensor": "https://g.h"}}}
        ]
    },
    "same grade, other subjects": {
        "sensor": "https://a.b",
        "courses": [{"subject": "Math", "grade": 3}, {"subject": "Reading", "grade": 3}],
    },
}


def sdk_accepts(tmp_path, data, env):
    path = tmp_path / "sdk.json"
    path.write_text(json.dumps(data))
    raw = _load_config(str(path))
    courses = [_resolve_course_for_env(c, env) for c in raw.courses]
    for course in courses:  # as create_server does before validating
        if not course.get("sensor") and not raw.sensor:
            launch = course.get("launch_url") or raw.launch_url
            if launch:
                from timeback.server.timeback import _derive_sensor_from_launch_url

                derived = _derive_sensor_from_launch_url(launch)
                if derived:
                    course["sensor"] = derived
    try:
        _validate_config(SdkAppConfig(raw.name, raw.sensor, raw.launch_url, courses))
    except ConfigValidationError:
        return False
    return True


def ours_accepts(data, env):
    try:
        parse_app_config(data, env)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_as_the_official_sdk(tmp_path, case, env):
    assert ours_accepts(CASES[case], env) == sdk_accepts(tmp_path, CASES[case], env)


def test_resolution_for_each_environment():
    stg = parse_app_config(GOOD, "staging")
    prd = parse_app_config(GOOD, "production")
    math3 = stg.course_for(CourseRef("Math", grade=3))
    assert math3.name == "Math G3"
    assert math3.synced_id("staging") == "m3-stg"
    assert math3.metadata == {"metrics": {"totalLessons": 12}}
    assert stg.course_for(CourseRef("Other", code="CS-101")).sensor == "https://nb.example.edu"
    assert prd.course_for(CourseRef("Other", code="CS-101")).sensor == "https://prod.example.edu"
    with pytest.raises(ConfigError, match=r"has no ids.production"):
        prd.course_for(CourseRef("Other", code="CS-101")).synced_id("production")
    with pytest.raises(ConfigError, match="'Math G4' is not in"):
        stg.course_for(CourseRef("Math", grade=4))
    made_up = stg.course_for(CourseRef("Math", grade=4), allow_unlisted=True)
    assert made_up.synced_id("staging") == "local-Math-G4"


def test_our_errors_say_where(tmp_path):
    with pytest.raises(ConfigError, match=r"courses\[0\] must have either 'grade' or 'courseCode'"):
        parse_app_config(CASES["no grade nor code"], "staging")
    with pytest.raises(ConfigError, match="no effective sensor"):
        parse_app_config(CASES["no sensor"], "staging")
    with pytest.raises(ConfigError, match="is not an absolute URL"):
        parse_app_config({"sensor": "nb.example.edu", "courses": []}, "staging")
    with pytest.raises(ConfigError, match=r"courses\[0\]: course.subject: 'Maths'"):
        parse_app_config(
            {"sensor": "https://a.b", "courses": [{"subject": "Maths", "grade": 1}]}, "staging"
        )
    bad = tmp_path / "timeback.config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_app_config(bad, "staging")
    with pytest.raises(ConfigError, match="no such file"):
        load_app_config(tmp_path / "missing.json", "staging")


def test_search_and_builtin_default(tmp_path):
    assert load_app_config(None, "staging", search=(tmp_path,)).sensor == LOCAL_SENSOR
    (tmp_path / "timeback.config.json").write_text(json.dumps(GOOD))
    found = load_app_config(None, "staging", search=(tmp_path / "nowhere", tmp_path))
    assert found.name == "Notebook Academy"
    assert found.path == str(tmp_path / "timeback.config.json")
    assert load_app_config(None, "staging", search=(tmp_path,), name_override="X").name == "X"


def test_traitlets_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("TIMEBACK_ENV", raising=False)
    cfg = Timeback()
    assert (cfg.sink, cfg.environment, cfg.heartbeat_interval) == ("local", "staging", 15.0)
    assert (cfg.idle_after, cfg.abandon_after) == (120.0, 600.0)
    assert cfg.store_path.endswith("timeback.sqlite3")
    monkeypatch.setenv("TIMEBACK_ENV", "production")
    assert Timeback().environment == "production"
    monkeypatch.setenv("TIMEBACK_ENV", "local")  # the SDK maps local to staging
    assert Timeback().environment == "staging"


def test_the_oneroster_url_is_the_configured_one_else_the_environments():
    assert Timeback(environment="staging").oneroster_url == ONEROSTER_BASE_URLS["staging"]
    assert Timeback(environment="production").oneroster_url == ONEROSTER_BASE_URLS["production"]
    assert ONEROSTER_BASE_URLS["staging"] != ONEROSTER_BASE_URLS["production"]
    proxy = "https://roster.proxy.example"
    assert Timeback(environment="production", oneroster_base_url=proxy).oneroster_url == proxy


def test_credentials_from_env_never_show_the_secret():
    assert Credentials.from_env({}) is None
    assert Credentials.from_env({"TIMEBACK_CLIENT_ID": "id"}) is None
    legacy = Credentials.from_env({"TIMEBACK_CLIENT_ID": "id1", "TIMEBACK_CLIENT_SECRET": "s3cr3t"})
    assert legacy == Credentials("id1", "s3cr3t")
    preferred = Credentials.from_env(
        {
            "TIMEBACK_API_CLIENT_ID": "api-id",
            "TIMEBACK_API_CLIENT_SECRET": "api-s3cr3t",
            "TIMEBACK_CLIENT_ID": "id1",
            "TIMEBACK_CLIENT_SECRET": "s3cr3t",
        }
    )
    assert preferred is not None and preferred.client_id == "api-id"
    for text in (repr(preferred), str(preferred), f"{preferred}", preferred.masked):
        assert "s3cr3t" not in text


def test_a_named_server_keeps_its_own_store_beside_the_default(monkeypatch):
    """Named servers of one hub user share a home; one store, one owner would leave all but
    one of them recording nothing, so each has its own file (the relay holds the truth)."""
    from timeback_jupyter.config import Timeback

    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME", raising=False)
    assert Timeback().store_path.endswith("/timeback/timeback.sqlite3")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "second lab/../x")
    assert Timeback().store_path.endswith("/timeback/timeback-second_lab_.._x.sqlite3")
