"""metadata.timeback: schemas per version, read (upgrade, refusal), merge, the generated TS."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from timeback_jupyter import notebook_metadata as nm
from timeback_jupyter.model import Activity, CourseRef, InvalidInput, Run
from timeback_jupyter.notebook_metadata import versions
from timeback_jupyter.store import Store
from timeback_jupyter.tracker import METADATA_SCHEMA_VERSION

from .test_tracker import Clock, make_tracker

ROOT = Path(__file__).resolve().parent.parent
CASES = json.loads((ROOT / "tests" / "notebook_metadata_cases.json").read_text())
R1 = "0b5e6c1e-4a51-4c36-9d43-6f4b7a1d2c11"
LESSON = {"id": "fractions-lesson", "name": "Fractions lesson",
          "course": {"subject": "Math", "grade": 3}, "stateful": True}  # fmt: skip
NEWER = (
    "metadata.timeback was made by a newer timeback-jupyter "
    f"(schema_version {nm.CURRENT_VERSION + 1}; this one reads up to {nm.CURRENT_VERSION}): "
    "upgrade timeback-jupyter"
)


# ---- the schemas ------------------------------------------------------------------------------


def test_every_version_has_a_valid_draft_2020_12_schema_and_a_step_up():
    for version in range(nm.OLDEST_VERSION, nm.CURRENT_VERSION + 1):
        schema = nm.schema(version)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["schema_version"] == {"const": version}
    assert set(versions.STEPS) == set(range(nm.OLDEST_VERSION, nm.CURRENT_VERSION))
    assert METADATA_SCHEMA_VERSION == nm.CURRENT_VERSION
    package = ROOT / "timeback_jupyter" / "notebook_metadata" / "schemas"
    assert sorted(p.name for p in package.glob("v*.json")) == [
        f"v{v}.json" for v in range(nm.OLDEST_VERSION, nm.CURRENT_VERSION + 1)
    ]


ACTIVITIES = [
    Activity("fractions-quiz", "Fractions quiz", CourseRef("Math", 3)),
    Activity("fractions-lesson", "Fractions lesson", CourseRef("Math", 3), stateful=True),
    Activity("algebra", "Algebra", CourseRef(code="ALG-1"), xp=25, mastery_threshold=0.8),
    Activity("pre-k.reading~1", "Letters", CourseRef("Reading", -1), xp=4.5, mastery_threshold=1),
]


@pytest.mark.parametrize("activity", ACTIVITIES, ids=lambda a: a.id)
@pytest.mark.parametrize("path", ["quiz.ipynb", None])
def test_the_current_schema_accepts_what_the_tracker_writes(tmp_path, activity, path):
    with Store(tmp_path / "t.sqlite3") as store:
        clock = Clock()
        tracker = make_tracker(store, clock)
        run = tracker.start(activity, path=path).run
        sections = [tracker.metadata_for(run, path)]
        clock.t += 60
        tracker.end(run.id)
        sections.append(tracker.metadata_for(tracker.get(run.id), path))
        again = tracker.start(activity, path=path, metadata_run=sections[0]["run"]).run
        clock.t += 60
        tracker.complete(again.id)
        sections.append(tracker.metadata_for(tracker.get(again.id), path))
    assert {s["run"]["status"] for s in sections} == {"active", "ended", "completed"}
    for section in sections:
        assert section["schema_version"] == nm.CURRENT_VERSION
        assert nm.problems(section, nm.CURRENT_VERSION) == []
        assert list(versions.validator(nm.CURRENT_VERSION).iter_errors(section)) == []
        assert nm.read(section) == section


def test_each_version_accepts_the_example_notebooks_sections_and_v1_what_v1_wrote():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        section = json.loads(notebook.read_text())["metadata"].get("timeback")
        if section is not None:
            assert nm.problems(section, nm.version_of(section)) == [], notebook.name
    # exactly what tracker.metadata_for wrote while the schema version was 1
    written_by_v1 = {"schema_version": 1, "activity": LESSON,
                     "run": {"id": R1, "student": "5f1d2c3b4a596877", "status": "ended",
                             "attempt": 2, "origin": None}}  # fmt: skip
    assert nm.problems(written_by_v1, 1) == []


# Where the schema and the model (which the server applies after it) must agree.
AGREEMENT = [
    ({"xp": 0}, "activity.xp"),
    ({"xp": -3}, "activity.xp"),
    ({"xp": "ten"}, "activity.xp"),
    ({"mastery_threshold": 0.79}, "activity.mastery_threshold"),
    ({"mastery_threshold": 1.5}, "activity.mastery_threshold"),
    ({"id": "has spaces!"}, "activity.id"),
    ({"stateful": "yes"}, "activity.stateful"),
    ({"course": {"subject": "Mathz", "grade": 3}}, "course.subject"),
    ({"course": {"subject": "Math", "grade": 14}}, "course.grade"),
    ({"course": {"subject": "Math", "grade": "three"}}, "course.grade"),
    ({"course": {"subject": "Math"}}, "course"),
    ({"xp_without_questions": "yes"}, "activity.xp_without_questions"),
    ({"xp": 12.5, "mastery_threshold": 0.95}, None),
    ({"xp": 3, "xp_without_questions": True}, None),
    ({"id": "  spaced  ", "course": {"code": "ALG-1"}}, None),
]


@pytest.mark.parametrize(("change", "field"), AGREEMENT)
def test_schema_and_model_refuse_the_same_activities(change, field):
    activity = {**LESSON, **change}
    found = nm.problems({"schema_version": nm.CURRENT_VERSION, "activity": activity}, 2)
    if field is None:
        assert found == []
        Activity.from_dict(activity)
        return
    assert found, activity
    with pytest.raises(InvalidInput) as err:
        Activity.from_dict(activity)
    assert err.value.field == field


# ---- read ---------------------------------------------------------------------------------------


def test_an_authors_declaration_without_schema_version_reads_as_version_1_upgraded():
    section = {"activity": {"id": "quiz", "course": {"subject": "Math", "grade": 3}}}
    before = copy.deepcopy(section)
    assert nm.read(section) == {"schema_version": nm.CURRENT_VERSION, **before}
    assert section == before  # the notebook's own dict is never changed
    assert nm.read(None) is None


def test_version_1_is_upgraded_keeping_unknown_keys_and_folding_old_spellings():
    v1 = {
        "schema_version": 1,
        "tool": {"x": 1},
        "activity": {"id": "alg", "name": "Algebra", "model": "stateful", "hint": 2,
                     "course": {"courseCode": "ALG-1", "term": "fall"}},
        "run": {"id": R1, "student": "s", "status": "ended", "attempt": 1, "origin": "a.ipynb",
                "grader": "ok"},
    }  # fmt: skip
    assert nm.read(v1, "a.ipynb") == {
        "schema_version": 2,
        "tool": {"x": 1},
        "activity": {"id": "alg", "name": "Algebra", "stateful": True, "hint": 2,
                     "course": {"code": "ALG-1", "term": "fall"}},
        "run": v1["run"],
    }  # fmt: skip
    # as version 1 read them: a given stateful / code wins over the old spelling
    both = {"activity": {"id": "a", "stateful": False, "model": "stateful",
                         "course": {"code": "A", "courseCode": "B"}}}  # fmt: skip
    activity = nm.read(both)["activity"]  # type: ignore[index]
    assert activity == {"id": "a", "stateful": False, "course": {"code": "A"}}
    assert Activity.from_dict(activity) == Activity.from_dict(both["activity"])


def test_a_newer_version_is_refused_with_its_message():
    section = {"schema_version": nm.CURRENT_VERSION + 1, "activity": {"anything": True}}
    with pytest.raises(nm.NewerVersionError) as err:
        nm.read(section, "quiz.ipynb")
    assert str(err.value) == f"quiz.ipynb: {NEWER}"
    assert err.value.version == nm.CURRENT_VERSION + 1


@pytest.mark.parametrize("version", ["2", 2.0, True, None, 0, -1])
def test_a_schema_version_that_is_no_version_is_named(version):
    with pytest.raises(nm.MetadataError, match=r"metadata\.timeback\.schema_version: ") as err:
        nm.read({"schema_version": version, "activity": LESSON}, "q.ipynb")
    assert not isinstance(err.value, nm.NewerVersionError)
    assert str(err.value).startswith("q.ipynb: ")


def test_every_problem_is_named_where_it_is_in_the_authors_terms():
    section = {"activity": {"id": "has spaces!", "name": "x",
                            "course": {"subject": "Mathz", "grade": "three"}}}  # fmt: skip
    with pytest.raises(nm.MetadataError) as err:
        nm.read(section, "bad.ipynb")
    assert err.value.problems == [
        "metadata.timeback.activity.course.grade: must be an integer, got 'three'",
        "metadata.timeback.activity.course.subject: 'Mathz' is not one of Reading, Language, "
        "Vocabulary, Social Studies, Writing, Science, FastMath, Math, None, Other",
        "metadata.timeback.activity.id: 'has spaces!' is not a slug (letters, digits, '-', '_', "
        "'.', '~', starting with a letter or digit)",
    ]
    assert str(err.value).startswith("bad.ipynb: metadata.timeback.activity.course.grade")
    with pytest.raises(nm.MetadataError, match="metadata.timeback: must be an object, got 'x'"):
        nm.read("x")
    with pytest.raises(nm.MetadataError, match=r"course: needs a grade \(with its subject\)"):
        nm.read({"activity": {"id": "a", "course": {"subject": "Math"}}})
    with pytest.raises(nm.MetadataError, match="activity.model: 'stateful' is version 1's"):
        nm.read({"schema_version": 2, "activity": {**LESSON, "model": "stateful"}})


def test_check_names_every_problem_and_never_raises():
    """What ``jupyter timeback doctor NOTEBOOK`` and the status show an author: all at once."""
    mathz = {"activity": {"id": "has spaces!", "name": "x",
                          "course": {"subject": "Mathz", "grade": "three"}}}  # fmt: skip
    found = nm.check(mathz)
    assert len(found) == 3 and found[1].startswith(
        "metadata.timeback.activity.course.subject: 'Mathz' is not one of Reading, "
    )
    assert nm.check("not-a-dict") == ["metadata.timeback: must be an object, got 'not-a-dict'"]
    assert nm.check({"schema_version": 9})[0].startswith(
        "metadata.timeback was made by a newer timeback-jupyter"
    )
    # what only the model refuses is named in the author's terms too
    blank = {"activity": {"id": "a", "name": "  ", "course": {"subject": "Math", "grade": 3}}}
    assert nm.check(blank) == ["metadata.timeback.activity.name: required (a non-empty string)"]
    assert nm.check(None) == [] and nm.check({"schema_version": 2}) == []
    assert nm.check({"activity": LESSON}) == []


def test_a_long_value_is_cut_short_in_the_message():
    pasted = "x" * 5000
    sections = [{"activity": pasted}, {"activity": {**LESSON, "name": 7, "id": pasted}}, pasted]
    for section in sections:
        with pytest.raises(nm.MetadataError) as err:
            nm.read(section)
        assert len(str(err.value)) < 400 and "..." in str(err.value), str(err.value)[:500]


def test_a_damaged_run_is_not_refused_the_tracker_ignores_it_with_a_note():
    for run in ["garbage", {"id": "nope"}, {**LESSON}, None]:
        section = {"schema_version": 2, "activity": LESSON, "run": run}
        assert nm.read(section)["run"] == run  # type: ignore[index]


# ---- merge (cases shared with the lab extension's vitest) ---------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_merge_cases_shared_with_the_lab_extension(case):
    existing = copy.deepcopy(case["existing"])
    if case.get("refused") == "newer":
        with pytest.raises(nm.NewerVersionError):
            nm.merge(existing, case["ours"])
    else:
        merged = nm.merge(existing, case["ours"])
        assert merged == case["expect"]
        assert nm.read(merged) == merged  # what we write reads back as is
    assert existing == case["existing"]  # never changed in place


def test_merge_writes_what_the_tracker_builds_over_a_v1_notebook(tmp_path):
    with Store(tmp_path / "t.sqlite3") as store:
        tracker = make_tracker(store, Clock())
        activity = Activity.from_dict({**LESSON, "xp": 30})
        run = tracker.start(activity, path="lesson.ipynb").run
        ours = tracker.metadata_for(run, "lesson.ipynb")
    v1 = {"schema_version": 1, "activity": {**LESSON, "note": "unit 4"}, "tool": 1}
    merged = nm.merge(v1, ours)
    assert merged["schema_version"] == 2 and merged["tool"] == 1
    assert merged["activity"] == {**LESSON, "xp": 30, "note": "unit 4"}
    assert merged["run"] == ours["run"]
    assert nm.problems(merged, 2) == []


def test_activity_xp_and_mastery_threshold_round_trip_through_the_store_form():
    activity = Activity.from_dict({**LESSON, "xp": 25, "mastery_threshold": 0.85})
    assert activity.to_dict() == {**LESSON, "xp": 25, "mastery_threshold": 0.85}
    assert Activity.from_dict(activity.to_dict()) == activity
    assert "xp" not in Activity.from_dict(LESSON).to_dict()  # absent stays absent
    run = Run(R1, activity, "s")
    assert run.activity.xp == 25


# ---- the generated TypeScript -----------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_metadata_types.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_typescript_is_fresh():
    gen = _generator()
    for path, text in gen.rendered().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run python scripts/gen_metadata_types.py"
        )
    assert gen.main(["gen", "--check"]) == 0


def test_the_generated_types_follow_the_schema():
    text = _generator().render()
    assert f"export const CURRENT_SCHEMA_VERSION = {nm.CURRENT_VERSION};" in text
    assert f"  schema_version: {nm.CURRENT_VERSION};" in text
    assert "  xp?: number;" in text and "  mastery_threshold?: number;" in text
    assert "  courseCode?: never;" in text  # version 1's spelling cannot be typed in
    assert "  status: 'active' | 'ended' | 'completed';" in text
    with pytest.raises(ValueError, match="not understood"):
        _generator().ts_type({"type": "object", "patternProperties": {}})
