"""A stateful activity over two lifetimes of a real `jupyter server`: Monday, then Wednesday."""

import json

from jupyter_client.blocking.client import BlockingKernelClient

from timeback_jupyter.store import Store

from .conftest import write_notebook
from .jupyter_process import Server, wait

START_LESSON = (
    "%timeback start fractions-lesson --name 'Fractions lesson' --subject Math --grade 3 --stateful"
)


def saved_run(root, path: str) -> dict | None:
    """The run in the notebook file; None while there is none, or while the server rewrites
    the file (jupyter_server rewrites it in place, so a reader can catch it half written)."""
    try:
        return json.loads((root / path).read_text())["metadata"]["timeback"]["run"]
    except (ValueError, KeyError):
        return None


def execute(client: BlockingKernelClient, code: str) -> tuple[str, str]:
    """Run ``code`` in the kernel: (stdout, stderr); a cell that fails fails the test."""
    out, err = [], []

    def collect(msg):
        content = msg["content"]
        if msg["msg_type"] == "stream":
            (out if content["name"] == "stdout" else err).append(content["text"])
        elif msg["msg_type"] == "error":
            err.append("\n".join(content["traceback"]))

    reply = client.execute_interactive(code, timeout=30, output_hook=collect)
    assert reply["content"]["status"] == "ok", "".join(err)
    return "".join(out), "".join(err)


def kernel_of(server: Server, path: str) -> BlockingKernelClient:
    kernel_id = server.open(path)["kernel"]["id"]
    client = BlockingKernelClient(connection_file=str(server.runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    # No heartbeat channel: it calls a kernel dead when importing takes over a second (a busy
    # machine); the kernel_info reply within the timeout is what readiness means.
    client.start_channels(hb=False)
    client.wait_for_ready(timeout=60)
    return client


def test_stateful_run_resumes_on_wednesday_with_the_same_run_id_and_completes_once(tmp_path):
    root = tmp_path / "notebooks"
    root.mkdir()
    store = tmp_path / "timeback.sqlite3"
    path = write_notebook(root, "lesson.ipynb")

    monday = Server(tmp_path, root, store)
    try:
        client = kernel_of(monday, path)
        out, err = execute(
            client,
            f"%load_ext timeback_jupyter\n{START_LESSON}\n"
            "import timeback_jupyter as tb\ntb.exercise('q1').check(6 / 8 == 3 / 4)",
        )
        assert out.startswith("timeback: started Fractions lesson (fractions-lesson, Math G3, ")
        assert out.endswith("q1: correct ✓\n"), err
        # no browser extension: the server writes the run into the notebook for Wednesday
        run_id = wait(lambda: saved_run(root, path), what="the run in the notebook")["id"]
        for _ in range(3):
            execute(client, "import time; time.sleep(0.3)")
        out, _ = execute(client, "%timeback end")
        assert out.startswith("timeback: ended Fractions lesson") and "resumes it" in out
        client.stop_channels()
    finally:
        monday.stop()
    with Store(store) as db:
        assert db.get_run(run_id).status == "ended"
        monday_active = db.get_run(run_id).active_seconds
    assert monday_active > 0

    wednesday = Server(tmp_path, root, store)
    try:
        client = kernel_of(wednesday, path)
        out, err = execute(client, "%load_ext timeback_jupyter\n%timeback start")
        assert out.startswith("timeback: resumed Fractions lesson"), err
        assert f"run {run_id}" in out
        out, _ = execute(
            client,
            "import timeback_jupyter as tb\ntb.exercise('q2').check(1 / 3 > 1 / 2)\n"
            "w = tb.CompletionButton(exercises=['q1', 'q2'])\nprint(w.button.disabled)",
        )
        assert out.endswith("False\n")
        for _ in range(2):
            execute(client, "import time; time.sleep(0.3)")
        out, _ = execute(client, "%timeback complete")
        assert out.startswith("timeback: completed Fractions lesson: ")
        # the XP outcome says why: one of two right is below Timeback's 80% floor
        assert "1/2 questions correct" in out and "below 80%" in out, out
        assert out.endswith(f" · run {run_id}\n")
        _, err = execute(client, "%timeback complete")
        assert "already completed" in err
        client.stop_channels()
    finally:
        wednesday.stop()

    with Store(store) as db:
        events = list(db.events())
        run = db.get_run(run_id)
        runs = [r.id for r in db.list_runs()]
    completions = [e for e in events if e["type"] == "ActivityEvent"]
    assert len(completions) == 1
    assert completions[0]["extensions"]["runId"] == run_id
    assert completions[0]["generated"]["attempt"] == 1
    metrics = {i["type"]: i["value"] for i in completions[0]["generated"]["items"]}
    assert (metrics["totalQuestions"], metrics["correctQuestions"]) == (2, 1)
    assert {e["extensions"]["runId"] for e in events} == {run_id}
    assert run.status == "completed" and run.active_seconds > monday_active
    assert runs == [run_id]
    assert saved_run(root, path)["id"] == run_id
