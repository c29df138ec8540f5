"""The school's catalog: ``courses[].activities`` in timeback.config.json, found by the
activity URL a server's events carry."""

from __future__ import annotations

import copy
import json

import pytest

from timeback_jupyter.caliper import activity_url
from timeback_jupyter.config import CatalogActivity, ConfigError, load_app_config
from timeback_jupyter.model import Activity, CourseRef, InvalidInput
from timeback_jupyter.relay.catalog import Catalog, parse_activity_url

from .conftest import BASE, CATALOG, SENSOR, catalog


def with_activities(*activities) -> dict:
    data = copy.deepcopy(CATALOG)
    data["courses"][0]["activities"] = list(activities)
    return data


def test_activities_are_read_in_timeback_words():
    math3 = catalog().app.courses[0]
    assert math3.activities[1] == CatalogActivity(
        "fractions-lesson", "Fractions lesson", 5.0, None, xp_without_questions=True
    )
    assert math3.activities[2].mastery_threshold == 1.0
    assert catalog().app.courses[1].activities == (CatalogActivity("intro", "Intro to Python", 3),)


def test_a_course_without_activities_has_none(tmp_path):
    data = copy.deepcopy(CATALOG)
    del data["courses"][0]["activities"]
    path = tmp_path / "timeback.config.json"
    path.write_text(json.dumps(data))
    cat = Catalog.load(path, "staging", BASE)
    assert cat.app.courses[0].activities == ()
    assert cat.find(CourseRef("Math", 3), "fractions-quiz") is None
    assert load_app_config(path, "staging").courses[1].activities[0].id == "intro"


@pytest.mark.parametrize(
    ("activity", "match"),
    [
        ({"id": "q", "name": "Q"}, r"activities\[0\]: 'xp' is required"),
        ({"id": "q", "xp": 0}, r"activities\[0\]\.xp: must be more than 0"),
        ({"id": "q", "xp": 5, "masteryThreshold": 0.5}, r"\.masteryThreshold: must be between"),
        ({"id": "q", "xp": 5, "mastery_threshold": 0.95}, "unknown key.*mastery_threshold"),
        ({"id": "no spaces", "xp": 5}, r"\.id: 'no spaces' is not a slug"),
        ({"id": "q", "xp": 5, "xpWithoutQuestions": "yes"}, r"\.xpWithoutQuestions: must be"),
        ("q", r"activities\[0\] must be an object"),
    ],
)
def test_bad_activities_are_named(activity, match):
    with pytest.raises(ConfigError, match=match):
        catalog(with_activities(activity))


def test_duplicate_activity_ids_are_refused():
    twice = {"id": "q", "xp": 5}
    with pytest.raises(ConfigError, match="duplicate activity id 'q' in Math G3"):
        catalog(with_activities(twice, twice))


def test_the_relay_needs_a_catalog_file(tmp_path):
    with pytest.raises(ConfigError, match="needs the school's catalog"):
        Catalog.load("", "staging", BASE)
    with pytest.raises(ConfigError, match="no such file"):
        Catalog.load(tmp_path / "missing.json", "staging", BASE)


def test_find_by_course_and_slug():
    cat = catalog()
    assert cat.find(CourseRef("Math", 3), "fractions-quiz").xp == 10
    assert cat.find(CourseRef(code="CS-101"), "intro").name == "Intro to Python"
    assert cat.find(CourseRef("Math", 4), "fractions-quiz") is None
    assert cat.find(CourseRef("Math", 3), "intro") is None


@pytest.mark.parametrize(
    "ref", [CourseRef("Math", 3), CourseRef(code="CS-101"), CourseRef("Social Studies", -1)]
)
@pytest.mark.parametrize("slug", ["fractions-quiz", "a.b~c_d"])
def test_the_activity_url_is_read_back(ref, slug):
    cat = catalog(
        {**CATALOG, "courses": [*CATALOG["courses"], {"subject": "Social Studies", "grade": -1}]}
    )
    course = cat.course(ref)
    url = activity_url(SENSOR + "/path", Activity(slug, "x", ref), course)
    assert parse_activity_url(url) == (ref, slug)


@pytest.mark.parametrize(
    "url",
    [
        "https://nb.example.edu/lessons/x",
        "https://nb.example.edu/activities/Math/g3/x/y",
        "https://nb.example.edu/activities/x",
        "https://nb.example.edu/activities/Math//x",
        None,
    ],
)
def test_other_urls_are_refused(url):
    with pytest.raises(InvalidInput, match="object.id"):
        parse_activity_url(url)


def test_the_public_catalog_has_no_ids():
    public = catalog().public()
    assert public["courses"][0]["activities"][0] == {
        "id": "fractions-quiz",
        "name": "Fractions quiz",
        "xp": 10,
    }
    assert "m3-stg" not in json.dumps(public)


def test_courses_without_ids_for_the_environment_are_problems():
    cat = Catalog(catalog().app, "production", BASE)
    [problem] = cat.problems()
    assert "CS-101" in problem and "ids.production" in problem


def test_the_official_sdk_still_accepts_a_config_with_activities(tmp_path):
    from tests.test_config import sdk_accepts

    assert sdk_accepts(tmp_path, CATALOG, "staging")
