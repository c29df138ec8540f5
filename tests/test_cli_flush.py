"""`jupyter timeback flush` from here: local sink, the Timeback stand-in, and its failures.

(Through a running server: tests/test_cli_server.py.)
"""

from __future__ import annotations

import fcntl
import os

import pytest

from timeback_jupyter.store import Store
from timeback_jupyter.testing.standin import Fault, StandIn

from .jupyter_process import Server, wait
from .test_cli import SECRET, assert_one_line_error, cli, filled_store, jupyter, make_env

CLIENT_ID = "flush-client"


@pytest.fixture
def env(tmp_path, monkeypatch):
    return make_env(tmp_path, monkeypatch)


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as standin:
        yield standin


@pytest.fixture
def to_timeback(env, api, monkeypatch):
    env.server_config(
        "c.Timeback.sink = 'timeback'\n"
        f"c.Timeback.base_url = {api.url!r}\n"
        f"c.Timeback.auth_url = {api.token_url!r}\n"
        "c.Timeback.retry_initial = 0.05\n"
        "c.Timeback.retry_max = 0.2\n"
    )
    monkeypatch.setenv("TIMEBACK_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("TIMEBACK_CLIENT_SECRET", SECRET)
    return env


def stats(env) -> dict:
    with Store(env.store) as store:
        return store.stats()


def test_flush_from_here_through_the_local_sink(env, capsys):
    filled_store(env.store)
    result = cli(capsys, "flush")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == f"flushed from here: no running Jupyter server delivers {env.store}"
    assert lines[1:] == [
        "sent 4 to the local sink, 0 to retry, 0 rejected (moved to dead letters); 0 left to send",
        "kept by the local sink on receipt: no job to wait for",
    ]
    assert stats(env)["sent"] == 4 and stats(env)["pending"] == 0
    assert not os.path.exists(f"{env.store}.drainer.lock") or _lock_is_free(env)


def _lock_is_free(env) -> bool:
    fd = os.open(f"{env.store}.drainer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def test_flush_from_here_delivers_to_timeback_once(to_timeback, api):
    ids = filled_store(to_timeback.store)
    result = jupyter(
        to_timeback,
        "flush",
        extra={"TIMEBACK_CLIENT_ID": CLIENT_ID, "TIMEBACK_CLIENT_SECRET": SECRET},
    )
    assert result.code == 0, result
    assert "sent 4 to the timeback sink" in result.out and "0 left to send" in result.out
    # the stand-in's job completes at once: the flush saw it done before saying so
    assert "confirmed 4 (Timeback's job completed), 0 waiting for Timeback's job" in result.out
    assert result.err == ""
    assert len(api.received_ids) == 4 and ids["dead"] not in api.received_ids
    assert SECRET not in result.out
    # Nothing left: a second flush sends nothing and says so.
    again = jupyter(
        to_timeback,
        "flush",
        extra={"TIMEBACK_CLIENT_ID": CLIENT_ID, "TIMEBACK_CLIENT_SECRET": SECRET},
    )
    assert again.code == 0 and "sent 0 to the timeback sink" in again.out
    assert "confirmed 0 (Timeback's job completed), 0 waiting" in again.out
    assert len(api.received_ids) == 4


def test_flush_says_what_was_rejected_and_exits_1(to_timeback, api, capsys):
    filled_store(to_timeback.store)
    api.script(Fault.error(400, "courseId math-3-stg is not synced"))
    result = cli(capsys, "flush")
    assert result.code == 1
    assert "to the timeback sink" in result.out and "rejected (moved to dead letters)" in result.out
    assert "last error: courseId math-3-stg is not synced" in result.out
    assert stats(to_timeback)["dead"] > 1


def test_flush_against_an_outage_keeps_the_events_and_exits_1(to_timeback, api, capsys):
    filled_store(to_timeback.store)
    api.script(*[Fault.error(500, "down for maintenance")] * 200)
    result = cli(capsys, "flush", "--timeout=2")
    assert result.code == 1
    assert "0 rejected" in result.out and "4 left to send" in result.out
    assert "down for maintenance" in result.out
    # kept: pending, or inflight when the timeout fell during a send (settled by the next drain)
    left = stats(to_timeback)
    assert left["pending"] + left["inflight"] == 4 and api.received == []


def awaiting(env) -> int:
    with Store(env.store) as store:
        return int(store.job_stats()["events_awaiting"])


def test_sent_is_not_confirmed_and_wait_follows_timebacks_job(to_timeback, api, capsys):
    filled_store(to_timeback.store)
    api.script(Fault.job_slow(6))  # Timeback stores them 6 s after taking them
    result = cli(capsys, "flush", "--timeout=1")
    assert result.code == 0, result  # all sent; confirmation was not asked for
    assert result.out.splitlines()[1:] == [
        "sent 4 to the timeback sink, 0 to retry, 0 rejected (moved to dead letters); "
        "0 left to send",
        "confirmed 0 (Timeback's job completed), 4 waiting for Timeback's job",
    ]
    assert awaiting(to_timeback) == 4 and api.received_ids == []  # accepted, not yet stored
    assert len(api.jobs) == 1

    waited = cli(capsys, "flush", "--timeout=1", "--wait=30")
    assert waited.code == 0, waited
    assert waited.out.splitlines()[1:] == [
        "sent 0 to the timeback sink, 0 to retry, 0 rejected (moved to dead letters); "
        "0 left to send",
        "confirmed 4 (Timeback's job completed), 0 waiting for Timeback's job",
    ]
    assert awaiting(to_timeback) == 0 and stats(to_timeback)["sent"] == 4
    assert len(api.received_ids) == 4 and len(api.jobs) == 1  # the same job: nothing sent twice


def test_a_job_not_done_within_the_wait_exits_1(to_timeback, api, capsys):
    filled_store(to_timeback.store)
    api.script(Fault.job_slow(120))
    result = cli(capsys, "flush", "--timeout=3", "--wait=1")
    assert result.code == 1, result
    assert "0 left to send" in result.out
    assert "confirmed 0 (Timeback's job completed), 4 waiting for Timeback's job" in result.out
    assert awaiting(to_timeback) == 4


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_through_the_server_it_says_what_waits_for_timebacks_job(to_timeback, api):
    filled_store(to_timeback.store)
    api.script(Fault.job_slow(3600))  # not done within this test
    root = to_timeback.tmp / "notebooks"
    root.mkdir()
    credentials = {"TIMEBACK_CLIENT_ID": CLIENT_ID, "TIMEBACK_CLIENT_SECRET": SECRET}
    server = Server(
        to_timeback.tmp, root, to_timeback.store, "--Timeback.student_id=sid-ada", env=credentials
    )
    try:
        wait(lambda: awaiting(to_timeback) == 4, what="the server to send them")
        result = jupyter(to_timeback, "flush", "--timeout=1")
        assert result.code == 0, result  # sent (by the server); confirmation not asked for
        assert result.out.splitlines() == [
            f"flushed through the Jupyter server at {server.url}/ (pid {server.proc.pid})",
            "sent 0 to the timeback sink, 0 to retry, 0 rejected (moved to dead letters); "
            "0 left to send",
            "confirmed 0 (Timeback's job completed), 4 waiting for Timeback's job",
        ]
        waited = jupyter(to_timeback, "flush", "--timeout=1", "--wait=1")
        assert waited.code == 1, waited  # asked to wait for them, and they still wait
        assert "confirmed 0 (Timeback's job completed), 4 waiting" in waited.out
        assert api.received_ids == [] and len(api.jobs) == 1
    finally:
        server.stop()


def test_flush_errors(env, capsys, monkeypatch):
    assert_one_line_error(cli(capsys, "flush"), "no store yet at", str(env.store))
    assert not env.store.exists()
    filled_store(env.store)
    assert_one_line_error(cli(capsys, "flush", "--timeout=0"), "--timeout must be in", code=2)
    assert_one_line_error(cli(capsys, "flush", "--timeout=soon"), "timeout", code=2)
    assert_one_line_error(cli(capsys, "flush", "--wait=-1"), "--wait must be in", code=2)

    env.server_config("c.Timeback.sink = 'timeback'\n")
    assert_one_line_error(cli(capsys, "flush"), "no credentials", "TIMEBACK_CLIENT_ID")
    assert stats(env)["pending"] == 4


def test_flush_while_another_process_delivers_and_no_server_answers(env, capsys):
    filled_store(env.store)
    fd = os.open(f"{env.store}.drainer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running drainer holds it
    try:
        result = cli(capsys, "flush")
        assert_one_line_error(result, "another process delivers the events of", str(env.store))
    finally:
        os.close(fd)
    assert stats(env)["pending"] == 4  # untouched
