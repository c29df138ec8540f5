"""The public API is typed for an author's type checker and IDE (issue 13).

mypy in strict mode checks a notebook author's script against the installed package: what
``reveal_type`` shows must be the real types (these tests fail if the API goes back to ``Any``),
the script must have no error, and a misuse must be one.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

COMPLETION = "TypedDict(timeback_jupyter.kernel.results.CompletionView, {"
RUN = "TypedDict(timeback_jupyter.kernel.results.RunView, {"
AUTHOR = """\
import timeback_jupyter
from timeback_jupyter import CompletionButton, CompletionView, Exercise, RunView, exercise

q1 = exercise("q1")
reveal_type(q1)  # Exercise
reveal_type(q1.id)  # str
reveal_type(q1.check(1 + 1 == 2))  # bool
reveal_type(q1.mark(False, quiet=True))  # bool
reveal_type(timeback_jupyter.exercise)  # def (exercise_id: str) -> Exercise
button = CompletionButton(exercises=["q1", "q2"], require="correct", min_active_minutes=2)
reveal_type(button.require)  # Literal[...]
reveal_type(button.min_active_minutes)  # float
reveal_type(button.completion)  # CompletionView | None
done: CompletionView = button.session.complete({"xp": 2})
reveal_type(done)  # CompletionView
reveal_type(done["metrics"])  # dict[str, float]
reveal_type(done["xp_capped"])  # bool
reveal_type(done["xp_outcome"])  # XpOutcomeView | None
reveal_type(done["run"]["exercises"])  # dict[str, bool]
reveal_type(done["run"]["status"])  # Literal
reveal_type(button.session.current().run)  # RunView | None
run: RunView = button.session.mark("q2", True)
reveal_type(run["active_seconds"])  # float
reveal_type(button.session.start()["resumed"])  # bool
answer: Exercise = timeback_jupyter.exercise("q3")
"""
EXPECTED = [
    r"timeback_jupyter\.kernel\.exercises\.Exercise",
    r"builtins\.str|str",
    r"builtins\.bool|bool",
    r"builtins\.bool|bool",
    r"def \(exercise_id: (builtins\.)?str\) -> timeback_jupyter\.kernel\.exercises\.Exercise",
    r"Literal\['nothing'\] \| Literal\['attempted'\] \| Literal\['correct'\]",
    r"builtins\.float|float",
    re.escape(COMPLETION) + r".*\) \| None",
    re.escape(COMPLETION) + r".*\)",
    r"(builtins\.)?dict\[(builtins\.)?str, (builtins\.)?float\]",
    r"builtins\.bool|bool",
    re.escape("TypedDict(timeback_jupyter.kernel.results.XpOutcomeView, {") + r".*\) \| None",
    r"(builtins\.)?dict\[(builtins\.)?str, (builtins\.)?bool\]",
    r"Literal\['active'\] \| Literal\['ended'\] \| Literal\['completed'\]",
    re.escape(RUN) + r".*\) \| None",
    r"builtins\.float|float",
    r"builtins\.bool|bool",
]
# Each line marked "refused" a type checker must refuse (an untyped API would accept it).
MISUSE = """\
import timeback_jupyter
from timeback_jupyter import CompletionButton, exercise

exercise(42)  # refused
CompletionButton(require="everything")  # refused
done = CompletionButton().completion
done["xp"]  # refused (and done may be None)
timeback_jupyter.exercize("q1")  # refused
answer = CompletionButton().session.complete({})
answer["xp_outcome"]["reasons"]  # refused (a completion of an older release has no outcome)
ok: str = exercise("q1").check(True)  # refused
"""


def mypy(tmp_path: Path, *files: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null",
         "--no-error-summary", "--hide-error-context", "--no-color-output", *files],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.splitlines()


@pytest.mark.slow
def test_an_author_script_type_checks_strictly_with_real_types(tmp_path: Path):
    (tmp_path / "author.py").write_text(AUTHOR)
    (tmp_path / "misuse.py").write_text(MISUSE)
    lines = mypy(tmp_path, "author.py", "misuse.py")

    author = [line for line in lines if line.startswith("author.py:")]
    errors = [line for line in author if ": error:" in line]
    assert errors == [], "\n".join(errors)
    revealed = [
        line.split('Revealed type is "', 1)[1][:-1] for line in author if "Revealed" in line
    ]
    assert len(revealed) == len(EXPECTED), "\n".join(author)
    for got, wanted in zip(revealed, EXPECTED, strict=True):
        assert re.fullmatch(wanted, got), f"revealed {got!r}, expected /{wanted}/"

    refused = {int(line.split(":")[1]) for line in lines if line.startswith("misuse.py:")}
    marked = {n for n, line in enumerate(MISUSE.splitlines(), 1) if "# refused" in line}
    assert refused == marked, "\n".join(lines)


def test_the_package_is_marked_typed_and_the_wheel_carries_it():
    from hatchling.builders.wheel import WheelBuilder

    assert (ROOT / "timeback_jupyter" / "py.typed").is_file()
    # The files the wheel would hold (without building the labextension it also ships).
    names = {f.distribution_path for f in WheelBuilder(str(ROOT)).recurse_included_files()}
    for name in (
        "py.typed",
        "pytest_plugin.py",
        "testing/standin/__init__.py",
        "testing/standin/__main__.py",
        "kernel/results.py",
    ):
        assert f"timeback_jupyter/{name}" in names


def test_the_lazy_names_are_the_typed_ones():
    # What type checkers see (the TYPE_CHECKING imports) is what a kernel gets at run time.
    import timeback_jupyter
    from timeback_jupyter.kernel import exercises, results, widget

    assert timeback_jupyter.Exercise is exercises.Exercise
    assert timeback_jupyter.CompletionButton is widget.CompletionButton
    assert timeback_jupyter.CompletionView is results.CompletionView
    assert timeback_jupyter.RunView is results.RunView
    assert set(timeback_jupyter.__all__) >= {"CompletionButton", "exercise", "RunView"}
    for name in timeback_jupyter.__all__:
        assert getattr(timeback_jupyter, name) is not None
    with pytest.raises(AttributeError, match="exercize"):
        timeback_jupyter.exercize  # noqa: B018
