"""`jupyter timeback`: the command itself, `status` and `export`.

Shared helpers for the other test_cli_* files live here too: an isolated Jupyter environment
(config, data and runtime dirs in tmp), the real command as a subprocess, the same command in
this process, and a store filled with real runs, windows and events.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from timeback_jupyter import caliper
from timeback_jupyter.cli import run
from timeback_jupyter.config import Course
from timeback_jupyter.model import Activity, Completion, CourseRef, Run, Window, new_run_id
from timeback_jupyter.store import Store

JUPYTER = str(Path(sys.executable).parent / "jupyter")
SENSOR = "https://notebooks.example.edu"
ONEROSTER = "https://api.staging.alpha-1edtech.ai"
COURSE = Course("Math", 3, None, {"staging": "math-3-stg"}, SENSOR)
QUIZ = Activity("fractions-quiz", "Fractions quiz", CourseRef("Math", 3))
LESSON = Activity("fractions-lesson", "Fractions lesson", CourseRef("Math", 3), stateful=True)
ACTOR = caliper.Actor(f"{ONEROSTER}/ims/oneroster/rostering/v1p2/users/s-1", "ada@school.edu")
SECRET = "cli-secret-never-shown"


@dataclass
class Env:
    """An isolated Jupyter environment: every JUPYTER_* dir and the store under tmp."""

    tmp: Path
    vars: dict[str, str]

    @property
    def config_dir(self) -> Path:
        return Path(self.vars["JUPYTER_CONFIG_DIR"])

    @property
    def runtime_dir(self) -> Path:
        return Path(self.vars["JUPYTER_RUNTIME_DIR"])

    @property
    def store(self) -> Path:
        return self.tmp / "timeback.sqlite3"

    def server_config(self, text: str) -> Path:
        """Write jupyter_server_config.py, as an admin configures the server."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        path = self.config_dir / "jupyter_server_config.py"
        path.write_text(f"c.Timeback.store_path = {str(self.store)!r}\n{text}")
        return path


def make_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Point every JUPYTER_* dir into tmp, drop TIMEBACK_* from the environment, cd to tmp."""
    dirs = {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "TIMEBACK_STUDENT_EMAIL": "ada@school.edu",
    }
    for name in list(os.environ):
        if name.startswith(("TIMEBACK_", "CALIPER_", "JUPYTERHUB_")):
            monkeypatch.delenv(name)
    for name, value in dirs.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = Env(tmp_path, dirs)
    result.server_config("")
    return result


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    return make_env(tmp_path, monkeypatch)


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(capsys, *argv: str) -> Result:
    """The command in this process (``timeback_jupyter.cli.run``), output captured."""
    capsys.readouterr()
    code = run(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def jupyter(env: Env, *argv: str, extra: dict[str, str] | None = None, timeout=60) -> Result:
    """The real `jupyter timeback ...` from the venv, in its own process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBACK_")}
    environ.update(env.vars)
    environ.update(extra or {})
    proc = subprocess.run(
        [JUPYTER, "timeback", *argv],
        env=environ,
        cwd=env.tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *needles: str, code: int = 1) -> None:
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def target(activity: Activity) -> caliper.Target:
    return caliper.Target("Jupyter", SENSOR, "staging", ONEROSTER, COURSE, activity)


def record_run(
    store: Store,
    activity: Activity,
    windows: list[tuple[float, float, float, float]],
    *,
    completion: dict | None = None,
    started: float | None = None,
    attempt: int = 1,
) -> str:
    """A run as the tracker records it: windows with their events, then maybe a completion."""
    run_id = new_run_id()
    start = started if started is not None else windows[0][0]
    store.insert_run(Run(run_id, activity, "5f1d2c3b4a596877", attempt, "active", start))
    for begin, end, active, inactive in windows:
        window = Window(run_id, begin, end, active, inactive)
        event = caliper.time_spent_event(window, run_id, ACTOR, target(activity))
        store.record_window(window, event, SENSOR)
    if completion is not None:
        done = Completion(run_id, **completion)
        event = caliper.completion_event(done, run_id, attempt, ACTOR, target(activity))
        store.record_completion(done, event, SENSOR)
    return run_id


T0 = 1_768_471_200.0  # 2026-01-15 10:00 UTC


def filled_store(path: Path) -> dict[str, str]:
    """Two runs of the quiz (one completed), one of the lesson, one event dead-lettered."""
    with Store(path) as store:
        first = record_run(
            store,
            QUIZ,
            [(T0, T0 + 15, 12, 3), (T0 + 15, T0 + 30, 15, 0)],
            completion={"xp_earned": 0.4, "at": T0 + 31, "total_questions": 4,
                        "correct_questions": 3},
        )  # fmt: skip
        second = record_run(store, QUIZ, [(T0 + 3600, T0 + 3615, 10, 5)], attempt=2)
        lesson = record_run(store, LESSON, [(T0 + 86400, T0 + 86415, 15, 0)])
        [bad] = [e["id"] for e in store.events() if e["session"] == f"urn:uuid:{lesson}"]
        store.claim_batch(50)
        store.dead_letter([bad], "stand-in says 400: courseId unknown")
        store.release([e["id"] for e in store.events(status="inflight")], "test")
    return {"first": first, "second": second, "lesson": lesson, "dead": bad}


# -- the command ---------------------------------------------------------------------------


def test_the_installed_command_lists_its_subcommands(env):
    result = jupyter(env, "--help")
    assert result.code == 0
    for sub in ("status", "report", "export", "flush", "doctor", "strip"):
        assert sub in result.out


def test_no_or_unknown_subcommand_is_one_line_and_exit_2(env, capsys):
    assert_one_line_error(jupyter(env), "choose a subcommand", "status", "strip", code=2)
    assert_one_line_error(
        cli(capsys, "frobnicate"), "unknown subcommand 'frobnicate'", "doctor", code=2
    )


def test_mistyped_options_are_refused_not_ignored(env, capsys):
    assert_one_line_error(
        cli(capsys, "report", "--timezon=UTC"), "unknown option --timezon", code=2
    )
    assert_one_line_error(cli(capsys, "report", "--timezone"), "expected one argument", code=2)
    assert_one_line_error(cli(capsys, "status", "extra"), "unexpected argument 'extra'", code=2)


def test_a_bad_timeback_setting_is_one_line(env, capsys):
    result = cli(capsys, "status", "--Timeback.sink=carrier-pigeon")
    assert_one_line_error(result, "bad c.Timeback setting", "sink", "carrier-pigeon")


def test_a_broken_config_file_is_one_line(env, capsys):
    env.server_config("c.Timeback.sink = \n")
    result = cli(capsys, "status")
    assert_one_line_error(result, "cannot load the Jupyter config", "SyntaxError")


# -- status --------------------------------------------------------------------------------


def test_status_shows_the_servers_config_with_secrets_masked(env):
    filled_store(env.store)
    (env.tmp / "timeback.config.json").write_text(json.dumps({
        "name": "Notebook Academy", "sensor": SENSOR,
        "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
    }))  # fmt: skip
    env.server_config(
        "c.Timeback.sink = 'timeback'\n"
        "c.Timeback.base_url = 'https://proxy-user:proxy-pass@caliper.example.edu'\n"
        "c.Timeback.student_id = 'sourced-7'\n"
    )
    result = jupyter(
        env,
        "status",
        extra={"TIMEBACK_CLIENT_ID": "client-1234", "TIMEBACK_CLIENT_SECRET": SECRET},
    )
    assert result.code == 0, result
    out = result.out
    assert SECRET not in out + result.err
    assert "proxy-pass" not in out and "proxy-user:***@caliper.example.edu" in out
    assert "clie… (secret set)" in out
    assert str(env.config_dir / "jupyter_server_config.py") in out
    assert "sink:           timeback (staging)" in out
    assert "ada@school.edu" in out and "sourcedId sourced-7" in out
    assert "Notebook Academy" in out and "1 course" in out
    assert f"{env.store} (3 runs)" in out
    assert "outbox:         4 queued (4 pending, 0 in flight), 0 sent" in out
    assert "jobs:           0 pending (0 events awaiting), 0 failed, 0 confirmed" in out
    assert "dead letters:   1" in out
    assert "courseId unknown" in out
    assert "* sink = 'timeback'" in out and "* store_path" in out
    assert "  batch_size = 50" in out  # defaults are shown, unmarked
    assert "no running Jupyter server" in out


def test_status_shows_timebacks_jobs_pending_failed_and_confirmed(env, capsys):
    filled_store(env.store)
    with Store(env.store, now=lambda: T0 + 100_000) as store:
        jobs = {"job-ok": 2, "job-lost": 1, "job-queued": 1}
        for job_id, count in jobs.items():
            store.record_job([i.event_id for i in store.claim_batch(count)], job_id)
        assert store.confirm("job-ok") == 2
        store.job_failed("job-lost", "Timeback's job job-lost failed", limit=5)
    result = cli(capsys, "status")
    assert result.code == 0, result
    assert (
        "jobs:           1 pending (1 events awaiting), 1 failed, 1 confirmed, oldest pending "
    ) in result.out
    assert "outbox:         2 queued (1 pending, 1 in flight), 2 sent" in result.out


def test_status_options_override_the_config_file(env, capsys):
    other = env.tmp / "elsewhere.sqlite3"
    result = cli(capsys, "status", f"--store={other}")
    assert result.code == 0
    assert f"{other} (not created yet: nothing recorded)" in result.out
    assert not other.exists()  # status never creates a store


def test_status_flags_what_is_broken_and_exits_1(env, capsys):
    env.store.write_bytes(b"this is not a database at all, just bytes" * 100)
    env.server_config("c.Timeback.sink = 'timeback'\n")
    result = cli(capsys, "status")
    assert result.code == 1
    assert "credentials:    \u2717 none: set TIMEBACK_CLIENT_ID" in result.out
    assert "store:          \u2717" in result.out
    assert "not a timeback store" in result.out
    assert "Traceback" not in result.err


# -- export --------------------------------------------------------------------------------


def test_export_writes_every_event_as_jsonl(env, capsys):
    ids = filled_store(env.store)
    result = jupyter(env, "export")
    assert result.code == 0, result
    events = [json.loads(line) for line in result.out.splitlines()]
    assert len(events) == 5
    assert events[-1]["id"] == ids["dead"]  # dead letters come last
    kinds = [e["type"] for e in events]
    assert kinds.count("ActivityEvent") == 1 and kinds.count("TimeSpentEvent") == 4
    for event in events:
        caliper.validate_event(event)

    out = env.tmp / "events.jsonl"
    result = cli(capsys, "export", "--output", str(out))
    assert result.code == 0
    assert "exported 5 events" in result.err
    assert out.read_text().splitlines() == [json.dumps(e, separators=(",", ":")) for e in events]


def test_export_errors(env, capsys):
    assert_one_line_error(cli(capsys, "export"), "no store yet at", str(env.store))
    assert not env.store.exists()  # never created by a read
    filled_store(env.store)
    missing = env.tmp / "no-such-dir" / "events.jsonl"
    assert_one_line_error(
        cli(capsys, "export", f"--output={missing}"), "cannot write", "does not exist"
    )
    assert not missing.parent.exists()
    assert_one_line_error(
        cli(capsys, "export", f"--output={env.tmp}"), "cannot write", "is a directory"
    )


def test_a_store_that_is_a_directory_or_corrupt_or_locked(env, capsys):
    env.server_config(f"c.Timeback.store_path = {str(env.tmp)!r}\n")
    assert_one_line_error(cli(capsys, "export"), "is a directory, not a timeback store")

    env.server_config("")
    env.store.write_bytes(b"garbage" * 1000)
    assert_one_line_error(cli(capsys, "export"), "not a timeback store")

    env.store.unlink()
    filled_store(env.store)
    holder = sqlite3.connect(env.store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = cli(capsys, "export", "--Command.busy_timeout=0.2")
        assert_one_line_error(result, "locked by another process")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cli(capsys, "export").code == 0


def test_the_local_sink_names_the_student_the_server_records_for(env, capsys, monkeypatch):
    monkeypatch.delenv("TIMEBACK_STUDENT_EMAIL")
    monkeypatch.setenv("JUPYTERHUB_USER", "grace")
    result = cli(capsys, "status")
    assert result.code == 0
    assert "student:        grace@students.local" in result.out
    assert "sourcedId placeholder (local sink)" in result.out
    assert "  student_email_template = ''" in result.out  # the fallback is not shown as config


def test_a_reader_that_goes_away_gets_no_traceback(env):
    with Store(env.store) as store:
        record_run(store, QUIZ, [(T0 + 15 * i, T0 + 15 * (i + 1), 10, 5) for i in range(400)])
    environ = {**os.environ, **env.vars}
    proc = subprocess.Popen(
        [JUPYTER, "timeback", "export"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.read(10) == '{"@context'
    proc.stdout.close()  # as `| head -c 10` does, long before 400 KB of events are written
    err = proc.stderr.read()
    proc.wait(30)
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_export_streams_and_an_export_that_fails_midway_leaves_the_old_file(
    env, capsys, monkeypatch
):
    """Written as it is read (a page of the store at a time), into a temporary file renamed
    over the target only once whole: a failure halfway leaves the previous export as it was."""
    with Store(env.store) as store:
        record_run(store, QUIZ, [(T0 + 15 * i, T0 + 15 * (i + 1), 10, 5) for i in range(1200)])
    out = env.tmp / "events.jsonl"
    out.write_text("the previous export\n")
    written: list[int] = []
    real = Store.export_jsonl

    def failing(self, fp):
        class Breaks:
            def write(self, text):
                written.append(len(text))
                if len(written) == 700:
                    raise OSError(28, "No space left on device")
                return fp.write(text)

        return real(self, Breaks())

    with monkeypatch.context() as m:
        m.setattr(Store, "export_jsonl", failing)
        assert_one_line_error(cli(capsys, "export", f"--output={out}"), "cannot write")
    assert len(written) == 700  # it was writing as it read, not at the end
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in env.tmp.iterdir() if p.name.startswith(".events")] == []
    result = cli(capsys, "export", f"--output={out}")
    assert result.code == 0 and "exported 1200 events" in result.err
    assert len(out.read_text().splitlines()) == 1200
