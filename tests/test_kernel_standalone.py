"""A kernel that no Jupyter server started (plain `jupyter console`, nbclient): it says so in
one line and records locally with the core, in its own SQLite file."""

import os

from jupyter_client.manager import KernelManager

from timeback_jupyter import caliper
from timeback_jupyter.store import Store

from .conftest import STUDENT
from .test_kernel_lifetimes import execute


def start_kernel(tmp_path):
    """A kernel as `jupyter console` starts one: no Jupyter server, no ticket."""
    data, runtime, work = tmp_path / "data", tmp_path / "runtime", tmp_path / "work"
    work.mkdir()
    runtime.mkdir()
    env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "TIMEBACK_STUDENT_EMAIL": STUDENT,
    }
    env.pop("JPY_SESSION_NAME", None)
    # named as `jupyter console` names its kernel's connection file
    km = KernelManager(kernel_name="python3", connection_file=str(runtime / "kernel-4242.json"))
    km.start_kernel(env=env, cwd=str(work))
    client = km.blocking_client()
    client.start_channels()
    return km, client, data, runtime


def test_a_kernel_without_a_server_says_so_and_records_locally(tmp_path):
    km, client, data, runtime = start_kernel(tmp_path)
    try:
        client.wait_for_ready(timeout=30)
        out, err = execute(
            client,
            "%load_ext timeback_jupyter\n"
            "%timeback start fractions-quiz --name 'Fractions quiz' --subject Math --grade 3",
        )
        store_path = data / "timeback" / "standalone.sqlite3"
        assert err.count("\n") == 1, err
        assert err.startswith(
            "timeback: no Jupyter server with the timeback extension started this kernel (no "
            f"kernel-4242.json in {runtime / 'timeback'})"
        )
        assert err.endswith(
            f"; recording locally in {store_path} (nothing is sent to Timeback from this kernel)\n"
        )
        assert out.startswith("timeback: started Fractions quiz (fractions-quiz, Math G3, ")

        out, err = execute(
            client,
            "import timeback_jupyter as tb\ntb.exercise('q1').check(True)\n"
            "w = tb.CompletionButton(exercises=['q1', 'q2'])\n"
            "print(w.button.disabled, w.message.value, w.button.model_id, sep=' | ')",
        )
        assert err == ""
        check, state = out.splitlines()
        assert check == "q1: correct ✓"
        assert state.startswith("True | Not yet: answer q2 first | ")
        execute(client, "%timeback exercise q2 --incorrect")
        for _ in range(3):
            execute(client, "import time; time.sleep(0.3)")
        out, _ = execute(client, "%timeback status")
        assert out.startswith(f"timeback: recording locally in {store_path}\n")
        assert "2 of 2 exercises answered, 1 correct" in out

        model_id = state.rsplit(" | ", 1)[1]
        data_ = {"method": "custom", "content": {"event": "click"}}
        client.shell_channel.send(
            client.session.msg("comm_msg", {"comm_id": model_id, "data": data_})
        )
        out, _ = execute(client, "print(w.button.description, w.message.value, sep=' | ')")
        assert out.startswith("Completed | Completed (attempt 1) · ")
        # the local recorder decides XP by the same policy, and says why
        assert "0 XP, 1/2 questions correct (0 XP: 1/2 correct, below 80%)" in out
        out, _ = execute(client, "%timeback status")
        assert "timeback: completed: 0 XP, 1/2 questions correct (0 XP: 1/2 correct" in out
        _, err = execute(client, "%timeback complete")
        assert err.startswith("%timeback complete: already completed (")
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)

    with Store(store_path) as store:
        events = list(store.events())
        [run] = store.list_runs()
    completions = [e for e in events if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    assert completions[0]["extensions"]["runId"] == run.id
    metrics = {i["type"]: i["value"] for i in completions[0]["generated"]["items"]}
    assert (metrics["totalQuestions"], metrics["correctQuestions"]) == (2, 1)
    spent = [e for e in events if e["type"] == "TimeSpentEvent"]
    assert spent and sum(i["value"] for e in spent for i in e["generated"]["items"]) > 0
    for event in events:
        caliper.validate_event(event)  # what the local sink would accept
    assert run.status == "completed" and run.exercises == {"q1": True, "q2": False}


def test_time_is_kept_locally_when_the_kernel_shuts_down_without_a_completion(tmp_path):
    km, client, data, _ = start_kernel(tmp_path)
    try:
        client.wait_for_ready(timeout=60)
        execute(
            client,
            "%load_ext timeback_jupyter\n"
            "%timeback start lesson --name Lesson --code MATH-3 --stateful",
        )
        for _ in range(3):
            execute(client, "import time; time.sleep(0.3)")
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)  # a clean exit: the open window is flushed

    with Store(data / "timeback" / "standalone.sqlite3") as store:
        [run] = store.list_runs()
        spent = [e for e in store.events() if e["type"] == "TimeSpentEvent"]
    assert run.status == "ended" and run.active_seconds >= 0.9
    assert sum(i["value"] for e in spent for i in e["generated"]["items"]) >= 0.9
