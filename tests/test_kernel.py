"""The kernel side in a real ipykernel of a notebook session on a real jupyter_server."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from jupyter_client.blocking.client import BlockingKernelClient

from .conftest import LESSON, QUIZ, wait_for, write_notebook
from .test_kernel_lifetimes import saved_run
from .test_server import open_notebook, started

START_QUIZ = "%timeback start fractions-quiz --name 'Fractions quiz' --subject Math --grade 3"


class Kernel:
    """A blocking client of a real kernel, driven from one thread of its own: the server that
    the kernel calls answers on the test's event loop, which must keep running meanwhile."""

    def __init__(self, make_client):
        self._thread = ThreadPoolExecutor(max_workers=1)
        self.client = self._thread.submit(make_client).result()

    async def call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        # run_in_executor, not to_thread: jupyter_core keeps its loop in a context variable
        # that to_thread would copy into the thread.
        return await loop.run_in_executor(self._thread, partial(fn, *args, **kwargs))

    def click(self, model_id):
        """What the browser sends when the student clicks an ipywidgets Button."""
        data = {"method": "custom", "content": {"event": "click"}}
        msg = self.client.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        self._thread.submit(self.client.shell_channel.send, msg).result()

    def stop(self):
        self._thread.submit(self.client.stop_channels).result()
        self._thread.shutdown()


async def run_cell(kernel, code, timeout=30):
    """Run ``code``; (stdout, stderr, reply content)."""
    out, err = [], []

    def collect(msg):
        content = msg["content"]
        if msg["msg_type"] == "stream":
            (out if content["name"] == "stdout" else err).append(content["text"])
        elif msg["msg_type"] == "error":
            err.append("\n".join(content["traceback"]))

    reply = await kernel.call(
        kernel.client.execute_interactive, code, timeout=timeout, output_hook=collect
    )
    return "".join(out), "".join(err), reply["content"]


async def ok(client, code):
    """Run ``code`` that must succeed without a word on stderr; its stdout."""
    out, err, reply = await run_cell(client, code)
    assert reply["status"] == "ok", err
    assert err == "", err
    return out


def kernel_client(jp_serverapp, kernel_id) -> BlockingKernelClient:
    client = BlockingKernelClient()
    client.load_connection_info(
        jp_serverapp.kernel_manager.get_kernel(kernel_id).get_connection_info()
    )
    # No heartbeat channel: it calls a kernel dead when importing takes over a second (a busy
    # machine); the kernel_info reply within the timeout is what readiness means.
    client.start_channels(hb=False)
    client.wait_for_ready(timeout=60)
    return client


async def connect(jp_serverapp, kernel_id):
    return await asyncio.get_running_loop().run_in_executor(
        None, Kernel, partial(kernel_client, jp_serverapp, kernel_id)
    )


def completions(ext, run_id=None):
    return [
        e
        for e in ext.store.events()
        if e["type"] == "ActivityEvent" and (run_id is None or e["extensions"]["runId"] == run_id)
    ]


def items(event):
    return {i["type"]: i["value"] for i in event["generated"]["items"]}


WIDGET_STATE = "print(w.button.disabled, w.button.description, w.message.value, sep=' | ')"


async def complete_quiz_with_the_widget(ext, jp_serverapp, jp_fetch, jp_root_dir):
    """The single-session path: start, cells, exercises, a click on the widget's button."""
    path = write_notebook(jp_root_dir, "quiz.ipynb")
    kernel_id = (await open_notebook(jp_fetch, path))["kernel"]["id"]
    client = await connect(jp_serverapp, kernel_id)
    try:
        out = await ok(client, f"%load_ext timeback_jupyter\n{START_QUIZ}")
        run_id = ext.tracker.run_at(path)
        assert run_id is not None
        assert "started Fractions quiz (fractions-quiz, Math G3, single-session)" in out
        assert run_id in out

        out = await ok(
            client,
            "import timeback_jupyter as tb\n"
            "w = tb.CompletionButton(exercises=['q1', 'q2', 'q3'])\n"
            f"{WIDGET_STATE}\nprint(w.button.model_id)",
        )
        state, model_id = out.strip().splitlines()
        assert state == "True | Mark complete | Not yet: answer q1, q2, q3 first"

        # q1 wrong, then the cell re-run right: the answer is replaced, not counted twice
        assert await ok(client, "tb.exercise('q1').check(1 + 1 == 3)") == "q1: not correct yet ✗\n"
        assert await ok(client, "tb.exercise('q1').check(1 + 1 == 2)") == "q1: correct ✓\n"
        out = await ok(client, "%timeback exercise q2 --incorrect")
        assert out == "timeback: q2 marked incorrect · 2 of 3 exercises answered, 1 correct\n"
        assert (await ok(client, WIDGET_STATE)).startswith(
            "True | Mark complete | Not yet: answer q3"
        )
        await ok(client, "tb.exercise('q3').check(True)")
        for _ in range(3):
            await ok(client, "import time; time.sleep(0.3)")
        assert (await ok(client, WIDGET_STATE)).startswith("False | Mark complete | \n")

        client.click(model_id)
        await wait_for(lambda: ext.store.get_completion(run_id), what="the completion")
        out = await ok(client, WIDGET_STATE)
        assert out.startswith("True | Completed | Completed (attempt 1) · ")
        # the XP outcome and why, as the server decided it
        assert "0 XP, 2/3 questions correct (0 XP: 2/3 correct, below 80%)" in out
        client.click(model_id)  # a second click: the button is disabled, the server answers
        await ok(client, "1")
    finally:
        client.stop()

    [event] = completions(ext)
    assert event["extensions"]["runId"] == run_id
    assert event["session"] == f"urn:uuid:{run_id}"
    metrics = items(event)
    assert (metrics["totalQuestions"], metrics["correctQuestions"]) == (3, 2)
    assert metrics["xpEarned"] == 0  # 2 of 3 right: below 80%
    assert ext.store.get_run(run_id).exercises == {"q1": True, "q2": False, "q3": True}
    return path, kernel_id, run_id


async def test_single_session_path_ends_in_exactly_one_completion(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    await complete_quiz_with_the_widget(ext, jp_serverapp, jp_fetch, jp_root_dir)
    # the notebook stays open: the server does not start a second attempt behind its back
    await ext.binding.reconcile()
    assert ext.tracker.live_runs() == []
    assert len(completions(ext)) == 1


async def test_after_a_kernel_restart_the_widget_shows_completed_and_nothing_completes_twice(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path, kernel_id, run_id = await complete_quiz_with_the_widget(
        ext, jp_serverapp, jp_fetch, jp_root_dir
    )
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body=b"")
    client = await connect(jp_serverapp, kernel_id)
    try:
        out = await ok(
            client,
            "import timeback_jupyter as tb\nw = tb.CompletionButton(exercises=['q1'])\n"
            f"{WIDGET_STATE}\nprint(w.button.model_id)",
        )
        state, model_id = out.strip().splitlines()
        # the server remembers the completion and its XP outcome across the restart
        assert state == (
            "True | Completed | Completed (attempt 1) · 0 XP, 2/3 questions correct "
            "(0 XP: 2/3 correct, below 80%)"
        )
        client.click(model_id)

        out, err, _ = await run_cell(client, f"%load_ext timeback_jupyter\n{START_QUIZ}")
        assert out == ""
        assert err.startswith("%timeback start: Fractions quiz (fractions-quiz, Math G3,")
        assert "is already completed (attempt 1); `%timeback start --new-attempt`" in err
        out, err, _ = await run_cell(client, "%timeback complete --xp 1")
        assert err.startswith("%timeback complete: already completed (")
        assert err.endswith("nothing was sent again\n")
        _, err, _ = await run_cell(client, "tb.exercise('q1').check(False)")
        assert err.startswith("timeback: q1 not recorded: run ")
        assert "is completed" in err
        assert len(completions(ext)) == 1
        assert ext.store.get_run(run_id).exercises["q1"] is True
        assert ext.tracker.live_runs() == []

        # only when asked for does a second attempt start
        out = await ok(client, f"{START_QUIZ} --new-attempt\n{WIDGET_STATE}")
        assert out.startswith("timeback: started Fractions quiz")
        assert "· attempt 2 · " in out
        # the widget follows the new attempt, where q1 is not answered yet
        assert out.endswith("True | Mark complete | Not yet: answer q1 first\n")
        second = ext.tracker.run_at(path)
        assert second not in (None, run_id)
    finally:
        client.stop()


MISUSES = [
    ("%timeback frobnicate", "%timeback: unknown subcommand 'frobnicate': use one of start, "
     "status, exercise, complete, end (%timeback --help)"),
    ("%timeback exercise --correct", "%timeback exercise: the following arguments are required: "
     "ID"),
    ("%timeback exercise q1", "%timeback exercise: one of the arguments --correct --incorrect is "
     "required"),
    ("%timeback start --name Quiz --subject Math --grade 3", "%timeback start: give the "
     "activity's ID first, e.g. %timeback start quiz-1 --name 'Quiz 1' --subject Math --grade 3"),
    ("%timeback start quiz --subject Math --grade three", "%timeback start: --grade: must be a "
     "whole number, got 'three'"),
    ("%timeback start quiz --subject Math --grade 30", "%timeback start: course.grade: must be "
     "between -1 and 13, got 30"),
    ("%timeback start quiz --subject Maths --grade 3", "%timeback start: course.subject: 'Maths' "
     "is not one of Reading, Language, Vocabulary, Social Studies, Writing, Science, FastMath, "
     "Math, None, Other"),
    ("%timeback start quiz --grade 3", "%timeback start: --grade needs --subject (one of "
     "Reading, Language, Vocabulary, Social Studies, Writing, Science, FastMath, Math, None, "
     "Other)"),
    ("%timeback start quiz --subject Math", "%timeback start: give the course: --subject S "
     "--grade N, or --code C"),
    ("%timeback start 'a quiz' --code M3", "%timeback start: activity.id: 'a quiz' is not a "
     "slug (letters, digits, '-', '_', '.', '~')"),
    ("%timeback start quiz --code M3 --stateful --single-session", "%timeback start: "
     "--single-session: not allowed with argument --stateful"),
    ("%timeback start quiz --code 'M3", "%timeback start: No closing quotation"),
    ("%timeback complete --total -1 --correct 0", "%timeback complete: --total: must not be "
     "negative, got -1"),
    ("%timeback complete --xp -5", "%timeback complete: --xp: must be a non-negative number, "
     "got '-5'"),
    ("%timeback complete --total 2 --correct 3", "%timeback complete: --correct 3 is more than "
     "--total 2"),
    ("%timeback complete --correct 3", "%timeback complete: --total and --correct go together"),
    ("%timeback complete --pct 120", "%timeback complete: --pct must be 0 to 100, got 120"),
    ("%timeback complete --bonus 3", "%timeback complete: unrecognized arguments: --bonus 3"),
]  # fmt: skip


async def test_every_misuse_gets_one_clear_line_and_changes_nothing(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "quiz.ipynb", {"activity": QUIZ})
    kernel_id = (await open_notebook(jp_fetch, path))["kernel"]["id"]
    client = await connect(jp_serverapp, kernel_id)
    try:
        await ok(client, "%load_ext timeback_jupyter\n%timeback exercise q1 --correct")
        run_id = ext.tracker.run_at(path)

        def state():
            return [(r.id, r.status, r.exercises) for r in ext.store.list_runs()], completions(ext)

        before = state()
        for line, message in MISUSES:
            out, err, reply = await run_cell(client, line)
            assert reply["status"] == "ok", line
            assert (out, err) == ("", message + "\n"), line
        assert state() == before

        out = await ok(client, "%timeback complete --total 4 --correct 3 --xp 0")
        assert out == (
            "timeback: completed Fractions quiz: 0 XP, 3/4 questions correct (0 XP: 3/4 correct, "
            f"below 80%) · run {run_id}\n"
        )
        done = state()
        out, err, _ = await run_cell(client, "%timeback complete --total 4 --correct 4")
        assert err == (
            "%timeback complete: already completed (0 XP, 3/4 questions correct (0 XP: 3/4 "
            "correct, below 80%), attempt 1): nothing was sent again\n"
        )
        _, err, _ = await run_cell(client, "%timeback end")
        assert err == "%timeback end: no run is open for quiz.ipynb: nothing to end\n"
        assert state() == done
        assert len(completions(ext, run_id)) == 1
    finally:
        client.stop()


async def test_help_status_and_an_end_that_stays_ended(jp_serverapp, jp_fetch, jp_root_dir):
    ext = await started(jp_serverapp)
    path = write_notebook(jp_root_dir, "lesson.ipynb")
    kernel_id = (await open_notebook(jp_fetch, path))["kernel"]["id"]
    client = await connect(jp_serverapp, kernel_id)
    try:
        out = await ok(client, "%load_ext timeback_jupyter\n%timeback --help")
        assert out.startswith("usage: %timeback [-h] COMMAND ...")
        for command in ("start", "status", "exercise", "complete", "end"):
            assert command in out
        assert (await ok(client, "%timeback")) == out
        assert "--new-attempt" in await ok(client, "%timeback start --help")

        out = await ok(client, "%timeback status")
        assert out == (
            "timeback: recording through the Jupyter server (local sink)\n"
            "timeback: no run yet for lesson.ipynb: %timeback start\n"
        )
        _, err, _ = await run_cell(client, "%timeback start")
        assert err.startswith("%timeback start: no activity is declared for lesson.ipynb: give ")

        lesson = (
            "%timeback start fractions-lesson --name 'Fractions lesson' --code MATH-3 --stateful"
        )
        out = await ok(client, lesson)
        run_id = ext.tracker.run_at(path)
        assert out.startswith(
            "timeback: started Fractions lesson (fractions-lesson, MATH-3, stateful)"
        )
        assert (await ok(client, lesson)).startswith("timeback: resumed Fractions lesson")
        out = await ok(client, "%timeback status")
        assert "attempt 1 · active · " in out and f"run {run_id}" in out

        out = await ok(client, "%timeback end")
        assert out.startswith("timeback: ended Fractions lesson · ")
        assert out.endswith("active · `%timeback start` resumes it\n")
        assert ext.store.get_run(run_id).status == "ended"
        # ended while the notebook stays open: neither the server nor a cell restarts it
        await ext.binding.reconcile()
        await ok(client, "x = 1")
        await ext.binding.reconcile()
        assert ext.tracker.run_at(path) is None
        assert ext.store.get_run(run_id).status == "ended"
        out = await ok(client, "%timeback status")
        assert "attempt 1 · ended · " in out and f"run {run_id}" in out
        _, err, _ = await run_cell(client, "%timeback end")
        assert err == "%timeback end: no run is open for lesson.ipynb: nothing to end\n"

        # the server writes the run into the notebook (no browser extension here), ended or not
        saved = await wait_for(lambda: saved_run(jp_root_dir, path), what="the run in the notebook")
        assert saved["id"] == run_id
        out = await ok(client, "%timeback start")
        assert out.startswith("timeback: resumed Fractions lesson") and run_id in out
        assert ext.tracker.run_at(path) == run_id

        # an exercise answered after an end resumes the run too
        await ok(client, "%timeback end")
        out = await ok(client, "%timeback exercise q1 --correct")
        assert ext.tracker.run_at(path) == run_id
        assert ext.store.get_run(run_id).exercises == {"q1": True}
        # and an ended run completes as it is, with no new start
        await ok(client, "%timeback end")
        out = await ok(client, "%timeback complete")
        assert out.endswith("1 XP per focused minute) · run " + f"{run_id}\n")
        assert "1/1 questions correct (" in out
        assert ext.tracker.live_runs() == []
    finally:
        client.stop()


async def test_start_without_arguments_uses_the_metadata_then_timeback_config(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    declared = write_notebook(jp_root_dir, "declared.ipynb", {"activity": LESSON})
    plain = write_notebook(jp_root_dir, "plain.ipynb")
    (jp_root_dir / "timeback.config.json").write_text(
        json.dumps(
            {
                "name": "Course notebooks",
                "courses": [],
                "jupyter": {
                    "activities": [
                        {"notebook": "other.ipynb", **QUIZ, "id": "not-this-one"},
                        {"notebook": "plain.ipynb", **QUIZ, "id": "plain-quiz"},
                    ]
                },
            }
        )
    )
    for path, expected in ((declared, "fractions-lesson"), (plain, "plain-quiz")):
        kernel_id = (await open_notebook(jp_fetch, path))["kernel"]["id"]
        client = await connect(jp_serverapp, kernel_id)
        try:
            out = await ok(client, "%load_ext timeback_jupyter\n%timeback start")
            assert f"({expected}, " in out
            assert ext.tracker.get(ext.tracker.run_at(path)).activity.id == expected
        finally:
            client.stop()


async def test_the_xp_outcome_shows_in_the_magic_and_in_status_after_a_restart(
    jp_serverapp, jp_fetch, jp_root_dir
):
    """An activity declaring its expected XP: a perfect first attempt earns it plus the bonus,
    and the reason shows on completing and in `%timeback status`, also after a restart."""
    ext = await started(jp_serverapp)
    quiz = {"schema_version": 2, "activity": {**QUIZ, "xp": 5}}
    path = write_notebook(jp_root_dir, "quiz.ipynb", quiz)
    kernel_id = (await open_notebook(jp_fetch, path))["kernel"]["id"]
    client = await connect(jp_serverapp, kernel_id)
    reason = "6.2 XP: 2/2 correct on the first attempt: the expected 5 XP + 25% bonus"
    try:
        await ok(client, "%load_ext timeback_jupyter\n%timeback start")
        run_id = ext.tracker.run_at(path)
        await ok(client, "%timeback exercise q1 --correct\n%timeback exercise q2 --correct")
        out = await ok(client, "%timeback complete --xp 50")
        assert out == (
            f"timeback: completed Fractions quiz: 6.2 XP, 2/2 questions correct ({reason}; "
            f"claimed 50 XP, more than the policy allows: 6.2 XP) · run {run_id}\n"
        )
        assert items(completions(ext, run_id)[0])["xpEarned"] == 6.2
    finally:
        client.stop()
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body=b"")
    client = await connect(jp_serverapp, kernel_id)
    try:
        out = await ok(client, "%load_ext timeback_jupyter\n%timeback status")
        assert f"timeback: completed: 6.2 XP, 2/2 questions correct ({reason}; " in out
    finally:
        client.stop()
