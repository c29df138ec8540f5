"""``%timeback``: start, status, exercise, complete, end.

A mistake gets one line on stderr, starting with the subcommand, and changes nothing; the magic
never raises at the student. Results are one or two lines on stdout.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from IPython.core.magic import Magics, line_magic, magics_class

from ..model import SUBJECTS, Activity, CourseRef, InvalidInput
from .session import KernelSession, TimebackError
from .views import (
    activity_line,
    completion_line,
    duration,
    exercises_line,
    metadata_fix,
    run_line,
)

COMMANDS = ("start", "status", "exercise", "complete", "end")
EXAMPLE = "%timeback start quiz-1 --name 'Quiz 1' --subject Math --grade 3"


class UsageError(Exception):
    """A misused magic; the message is the line to show."""


class _HelpShown(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message.removeprefix('argument ')}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(message.strip())
        raise _HelpShown


def _whole(negative: bool = False) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < 0 and not negative:
            raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
        return value

    return parse


def _amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
    return value


def build_parser() -> Parser:
    parser = Parser(
        prog="%timeback",
        description="Record this notebook as a Timeback activity.",
        epilog=f"Example: {EXAMPLE}. `%timeback COMMAND --help` explains a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    start = commands.add_parser(
        "start",
        help="start or resume the notebook's activity",
        description="Start or resume the notebook's activity. Without ID: the activity the "
        "notebook's metadata declares, else the one timeback.config.json declares for it.",
    )
    start.add_argument("id", nargs="?", metavar="ID", help="the activity's id, a URL-safe slug")
    start.add_argument("--name", help="the name students see (default: the id)")
    start.add_argument("--subject", help=f"one of {', '.join(SUBJECTS)}")
    course = start.add_mutually_exclusive_group()
    course.add_argument("--grade", type=_whole(negative=True), help="the course's grade, -1 to 13")
    course.add_argument("--code", help="the course's code, instead of subject and grade")
    model = start.add_mutually_exclusive_group()
    model.add_argument("--stateful", action="store_true", help="a run that spans sessions")
    model.add_argument(
        "--single-session", action="store_true", help="one sitting per run (the default)"
    )
    start.add_argument(
        "--expected-xp",
        type=_amount,
        metavar="MINUTES",
        help="the activity's expected XP: the minutes a competent student needs (a timed "
        "run-through, rounded); without it the activity earns its focused minutes",
    )
    start.add_argument(
        "--new-attempt", action="store_true", help="start again after a completed run"
    )

    commands.add_parser("status", help="show the run and how it is recorded")

    exercise = commands.add_parser("exercise", help="record an exercise's answer")
    exercise.add_argument("id", metavar="ID", help="the exercise's id, e.g. q1")
    verdict = exercise.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--correct", action="store_true", help="answered correctly")
    verdict.add_argument("--incorrect", action="store_true", help="answered, not correctly")

    complete = commands.add_parser(
        "complete",
        help="complete the activity (once per run)",
        description="Complete the activity once. Without --total/--correct the notebook's "
        "exercises are the questions. XP follows Timeback's XP system: the activity's expected "
        "XP when mastered, 0 below 80%% or not mastered; --xp never exceeds it.",
    )
    complete.add_argument("--xp", type=_amount, help="XP earned (never above the XP policy)")
    complete.add_argument("--total", type=_whole(), help="number of questions")
    complete.add_argument("--correct", type=_whole(), help="questions answered correctly")
    complete.add_argument("--mastered", type=_whole(), help="units mastered")
    complete.add_argument("--pct", type=_amount, help="percent complete, 0 to 100")

    commands.add_parser("end", help="end this session (a stateful run resumes later)")
    return parser


def _activity(args: argparse.Namespace) -> Activity | None:
    given = [args.name, args.subject, args.grade, args.code, args.expected_xp]
    if args.id is None:
        if any(v is not None for v in given) or args.stateful or args.single_session:
            raise UsageError(f"%timeback start: give the activity's ID first, e.g. {EXAMPLE}")
        return None
    if args.grade is None and args.code is None:
        raise UsageError("%timeback start: give the course: --subject S --grade N, or --code C")
    if args.grade is not None and args.subject is None:
        raise UsageError(f"%timeback start: --grade needs --subject (one of {', '.join(SUBJECTS)})")
    try:
        course = CourseRef(subject=args.subject or "Other", grade=args.grade, code=args.code)
        return Activity(
            args.id, args.name or args.id, course, stateful=args.stateful, xp=args.expected_xp
        )
    except InvalidInput as err:
        raise UsageError(f"%timeback start: {err}") from None


def _completion(args: argparse.Namespace) -> dict[str, Any]:
    if (args.total is None) != (args.correct is None):
        raise UsageError("%timeback complete: --total and --correct go together")
    if args.total is not None and args.correct > args.total:
        raise UsageError(
            f"%timeback complete: --correct {args.correct} is more than --total {args.total}"
        )
    if args.pct is not None and args.pct > 100:
        raise UsageError(f"%timeback complete: --pct must be 0 to 100, got {args.pct:g}")
    return {
        "xp": args.xp,
        "total": args.total,
        "correct": args.correct,
        "mastered": args.mastered,
        "pct": args.pct,
    }


@magics_class
class TimebackMagics(Magics):
    def __init__(self, shell: Any, session: KernelSession) -> None:
        super().__init__(shell)
        self.session = session
        self.parser = build_parser()

    @line_magic
    def timeback(self, line: str) -> None:
        """Record this notebook as a Timeback activity: `%timeback --help`."""
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        command = f"%timeback {first}" if first in COMMANDS else "%timeback"
        try:
            words = shlex.split(line)
        except ValueError as err:  # an unclosed quote
            self._fail(f"{command}: {err}")
            return
        try:
            if words and not words[0].startswith("-") and words[0] not in COMMANDS:
                raise UsageError(
                    f"%timeback: unknown subcommand {words[0]!r}: use one of "
                    f"{', '.join(COMMANDS)} (%timeback --help)"
                )
            if not words:
                self.parser.print_help()
                return
            args, extra = self.parser.parse_known_args(words)
            if extra:
                raise UsageError(f"{command}: unrecognized arguments: {' '.join(extra)}")
            getattr(self, f"_{args.command}")(args)
        except _HelpShown:
            return
        except UsageError as err:
            self._fail(str(err))
        except TimebackError as err:
            self._fail(f"{command}: {err}")

    @staticmethod
    def _fail(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    @staticmethod
    def _say(line: str) -> None:
        print(f"timeback: {line}", flush=True)

    def _start(self, args: argparse.Namespace) -> None:
        activity = _activity(args)
        answer = self.session.start(activity, new_attempt=args.new_attempt)
        run = answer["run"]
        if run.get("status") == "completed":
            self._fail(
                f"%timeback start: {activity_line(run['activity'])} is already completed "
                f"(attempt {run['attempt']}); `%timeback start --new-attempt` starts another"
            )
            return
        verb = "resumed" if answer.get("resumed") else "started"
        self._say(f"{verb} {run_line(run, self.session.declared)}")
        if answer.get("note"):
            self._say(str(answer["note"]))

    def _status(self, args: argparse.Namespace) -> None:
        current = self.session.current()
        if not current.problems:  # else this notebook records nothing, wherever it would
            self._say(f"recording {current.where}")
        if current.problem:
            self._fail(f"%timeback status: not recording: {current.problem}")
        for problem in current.problems:
            self._fail(f"%timeback status: not recording this notebook: {problem}")
        if current.problems:
            self._fail(f"%timeback status: fix: {metadata_fix(current.path)}")
        if current.run is None:
            if not current.problems:
                self._say(f"no run yet for {current.path or 'this kernel'}: %timeback start")
        else:
            self._say(run_line(current.run, self.session.declared))
            done = current.run.get("completion")
            if done:
                self._say(f"completed: {completion_line(done)}")

    def _exercise(self, args: argparse.Namespace) -> None:
        run = self.session.mark(args.id, bool(args.correct))
        verdict = "correct" if args.correct else "incorrect"
        line = exercises_line(run, self.session.declared)
        self._say(f"{args.id} marked {verdict} · {line}")

    def _complete(self, args: argparse.Namespace) -> None:
        metrics = _completion(args)
        answer = self.session.complete(metrics)
        run = answer["run"]
        if answer.get("already_completed"):
            raise UsageError(
                f"%timeback complete: already completed ({completion_line(answer)}, attempt "
                f"{run.get('attempt')}): nothing was sent again"
            )
        self._say(
            f"completed {run['activity']['name']}: {completion_line(answer)} · run {run['id']}"
        )

    def _end(self, args: argparse.Namespace) -> None:
        run = self.session.end()["run"]
        then = (
            "`%timeback start` resumes it"
            if run["activity"].get("stateful")
            else "not completed; a new start begins a new attempt"
        )
        self._say(
            f"ended {run['activity']['name']} · {duration(run.get('active_seconds') or 0)} "
            f"active · {then}"
        )
