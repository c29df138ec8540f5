"""`jupyter timeback doctor` against the Timeback stand-in: every check, passing and failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timeback_jupyter.store import owner
from timeback_jupyter.testing.standin import TOKEN_PATH, VALIDATE_PATH, Fault, StandIn

from .test_cli import SECRET, SENSOR, cli, filled_store, jupyter, make_env

CLIENT_ID = "doctor-client"
SOURCED_ID = "sourced-ada-1"


@pytest.fixture
def env(tmp_path, monkeypatch):
    return make_env(tmp_path, monkeypatch)


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as standin:
        standin.users["ada@school.edu"] = [SOURCED_ID]
        yield standin


@pytest.fixture
def configured(env, api, monkeypatch):
    """A server configured for the stand-in, as an admin would: config file + credentials."""
    (env.tmp / "timeback.config.json").write_text(json.dumps({
        "name": "Notebook Academy", "sensor": SENSOR,
        "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
    }))  # fmt: skip
    env.server_config(
        "c.Timeback.sink = 'timeback'\n"
        f"c.Timeback.base_url = {api.url!r}\n"
        f"c.Timeback.auth_url = {api.token_url!r}\n"
        f"c.Timeback.oneroster_base_url = {api.url!r}\n"
        f"c.ServerApp.root_dir = {str(env.tmp)!r}\n"
    )
    monkeypatch.setenv("TIMEBACK_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("TIMEBACK_CLIENT_SECRET", SECRET)
    return env


def marks(out: str) -> dict[str, str]:
    """``{check name: mark}`` from doctor's lines."""
    found = {}
    for line in out.splitlines():
        mark, _, rest = line.partition(" ")
        if mark in ("\u2713", "\u2717", "-", "!"):
            found[rest.split(":", 1)[0]] = mark
    return found


def test_doctor_passes_end_to_end_against_the_standin(configured, api):
    result = jupyter(
        configured,
        "doctor",
        extra={"TIMEBACK_CLIENT_ID": CLIENT_ID, "TIMEBACK_CLIENT_SECRET": SECRET},
    )
    assert result.code == 0, result
    assert marks(result.out) == {
        name: "\u2713"
        for name in ("config", "timeback.config.json", "courses", "store", "student",
                     "credentials", "token", "student id", "sample event")
    }  # fmt: skip
    assert "all 9 checks passed" in result.out
    assert result.err == ""  # library logs (token manager, httpx) stay off the terminal
    assert f"sourcedId {SOURCED_ID} (found by email in OneRoster)" in result.out
    assert f"accepted by {api.url}{VALIDATE_PATH}" in result.out
    assert SECRET not in result.out + result.err
    # It asked for a token, looked the student up, and validated without sending an event.
    paths = [r.path for r in api.requests]
    assert TOKEN_PATH in paths and VALIDATE_PATH in paths
    assert api.received == []
    [validated] = [r.body for r in api.requests if r.path == VALIDATE_PATH]
    event = validated["data"][0]
    assert event["type"] == "TimeSpentEvent"
    assert event["actor"]["id"].endswith(f"/users/{SOURCED_ID}")
    assert event["extensions"]["courseId"] == "math-3-stg"
    assert not configured.store.exists()  # checking the store never creates it


def test_doctor_without_credentials_fails_and_skips_what_needs_them(
    configured, capsys, monkeypatch
):
    monkeypatch.delenv("TIMEBACK_CLIENT_ID")
    monkeypatch.delenv("TIMEBACK_CLIENT_SECRET")
    result = cli(capsys, "doctor")
    assert result.code == 1
    found = marks(result.out)
    assert found["credentials"] == "\u2717"
    assert [found[n] for n in ("token", "student id", "sample event")] == ["-"] * 3
    assert "set TIMEBACK_CLIENT_ID and TIMEBACK_CLIENT_SECRET" in result.out
    assert "1 of 6 checks failed" in result.out
    assert "Traceback" not in result.err


def test_doctor_with_a_wrong_secret_says_the_token_was_refused(configured, capsys, monkeypatch):
    monkeypatch.setenv("TIMEBACK_CLIENT_SECRET", "not-the-secret")
    result = cli(capsys, "doctor")
    assert result.code == 1
    token_line = next(line for line in result.out.splitlines() if " token:" in line)
    assert token_line.startswith("\u2717") and "401" in token_line
    assert "not-the-secret" not in result.out + result.err
    assert marks(result.out)["sample event"] == "-"


def test_doctor_reports_a_rejected_sample_event(configured, api, capsys):
    api.script(Fault.error(400, "sensor is not registered", path=VALIDATE_PATH))
    result = cli(capsys, "doctor")
    assert result.code == 1
    line = next(line for line in result.out.splitlines() if "sample event" in line)
    assert line.startswith("\u2717") and "sensor is not registered" in line

    # A validation answer with errors in a shape the official client's model does not expect
    # is still read and shown.
    api.script(
        Fault("status", 200, {"status": "error", "message": "object.id: unknown app",
                              "errors": ["object.id: unknown app"]}, path=VALIDATE_PATH)
    )  # fmt: skip
    result = cli(capsys, "doctor")
    line = next(line for line in result.out.splitlines() if "sample event" in line)
    assert line.startswith("\u2717") and "object.id: unknown app" in line


def test_doctor_reports_an_unknown_student(configured, api, capsys):
    api.users.clear()
    result = cli(capsys, "doctor")
    assert result.code == 1
    line = next(line for line in result.out.splitlines() if "student id" in line)
    assert line.startswith("\u2717") and "no Timeback user with this email" in line
    assert "ada@school.edu" not in line  # redacted, as the server logs it


def test_doctor_reports_an_unreachable_api(configured, api, capsys):
    configured.server_config(
        "c.Timeback.sink = 'timeback'\n"
        "c.Timeback.base_url = 'http://127.0.0.1:9'\n"
        "c.Timeback.auth_url = 'http://127.0.0.1:9/oauth2/token'\n"
        "c.Timeback.request_timeout = 2.0\n"
    )
    result = cli(capsys, "doctor")
    assert result.code == 1
    line = next(line for line in result.out.splitlines() if " token:" in line)
    assert line.startswith("\u2717") and "127.0.0.1:9" in line


def test_doctor_reports_config_course_and_store_problems(configured, capsys):
    (configured.tmp / "timeback.config.json").write_text(json.dumps({
        "sensor": SENSOR, "courses": [{"subject": "Math", "grade": 4}],
    }))  # fmt: skip
    configured.store.write_bytes(b"not a database" * 200)
    result = cli(capsys, "doctor")
    assert result.code == 1
    found = marks(result.out)
    assert found["courses"] == "\u2717" and "no ids.staging for Math G4" in result.out
    assert found["store"] == "\u2717" and "not a timeback store" in result.out
    assert found["sample event"] == "\u2717" and "no course with ids.staging" in result.out

    (configured.tmp / "timeback.config.json").write_text("{not json")
    result = cli(capsys, "doctor")
    assert marks(result.out)["timeback.config.json"] == "\u2717"
    assert "invalid JSON" in result.out


def test_doctor_on_the_local_sink_needs_no_credentials(env, capsys):
    filled_store(env.store)
    result = cli(capsys, "doctor")
    assert result.code == 0, result
    found = marks(result.out)
    assert found["credentials"] == "-" and found["store"] == "\u2713"
    assert "validates with the official timeback-caliper models (local)" in result.out
    assert "3 runs, 4 pending, 1 dead letters" in result.out


def test_doctor_warns_of_a_store_on_a_network_file_system(env, capsys, monkeypatch):
    filled_store(env.store)
    mountinfo = env.tmp / "mountinfo"
    mountinfo.write_text(
        Path("/proc/self/mountinfo").read_text()
        + f"90 27 0:70 / {env.store.parent} rw,relatime - nfs4 fs1:/export/home rw,vers=4.2\n"
    )
    monkeypatch.setattr(owner, "MOUNTINFO", str(mountinfo))
    result = cli(capsys, "doctor")
    assert result.code == 0, result  # the server records there too: the admin should move it
    found = marks(result.out)
    assert found["store"] == "\u2713" and found["store disk"] == "!"
    assert (
        f"! store disk: the store {env.store} is on a network file system (nfs4): SQLite's WAL "
        "and file locks are unreliable there" in result.out
    )
    assert "c.Timeback.store_path" in result.out
    assert result.out.splitlines()[-1].endswith("checks passed (1 with a warning)")


MATHZ = {"id": "has spaces!", "name": "Quiz", "course": {"subject": "Mathz", "grade": "three"}}


def notebook(tmp, name, metadata):
    nb = {"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}
    (tmp / name).write_text(json.dumps(nb))
    return str(tmp / name)


def test_doctor_names_every_problem_of_each_notebooks_metadata(env, capsys):
    """Issue 19: an author checks notebooks before students open them; every problem is
    named in the author's terms, and the exit status says there were some."""
    bad = notebook(env.tmp, "bad.ipynb", {"timeback": {"activity": MATHZ}})
    scalar = notebook(env.tmp, "scalar.ipynb", {"timeback": "not-a-dict"})
    good = notebook(env.tmp, "good.ipynb", {"timeback": {"activity": {
        "id": "quiz-1", "name": "Quiz", "course": {"subject": "Math", "grade": 3}}}})  # fmt: skip
    plain = notebook(env.tmp, "plain.ipynb", {})
    result = cli(capsys, "doctor", bad, scalar, good, plain, str(env.tmp / "missing.ipynb"))
    assert result.code == 1, result
    lines = result.out.splitlines()
    assert f"\u2717 {bad}: metadata.timeback.activity.course.subject: 'Mathz' is not one of " \
        "Reading, Language, Vocabulary, Social Studies, Writing, Science, FastMath, Math, " \
        "None, Other" in lines  # fmt: skip
    assert f"\u2717 {bad}: metadata.timeback.activity.course.grade: must be an integer, got " \
        "'three'" in lines  # fmt: skip
    assert any(
        line.startswith(f"\u2717 {bad}: metadata.timeback.activity.id: 'has spaces!' is not a slug")
        for line in lines
    )
    assert f"\u2717 {scalar}: metadata.timeback: must be an object, got 'not-a-dict'" in lines
    assert f"\u2713 {good}: activity 'quiz-1' (Math grade 3) is valid" in lines
    assert f"- {plain}: declares no activity (no metadata.timeback)" in lines
    assert any(
        line.startswith(f"\u2717 {env.tmp / 'missing.ipynb'}: cannot be read") for line in lines
    )
    assert lines[-1] == "3 of 5 notebooks have problems"


def test_doctor_passes_good_notebooks(env, capsys):
    good = notebook(env.tmp, "good.ipynb", {"timeback": {"schema_version": 2, "activity": {
        "id": "quiz-1", "name": "Quiz", "course": {"code": "MATH-3"}}}})  # fmt: skip
    result = cli(capsys, "doctor", good)
    assert result.code == 0, result
    assert result.out.splitlines() == [
        f"\u2713 {good}: activity 'quiz-1' (course MATH-3) is valid",
        "the notebook passed",
    ]
