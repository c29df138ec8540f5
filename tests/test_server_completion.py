"""A completion through the REST API: checked against the run's record before anything is
written, XP awarded by Timeback's XP system, the outcome in the answer and in the run after."""

import json

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import QUIZ, body, write_notebook
from .test_server import started

# (claim, status, words of the message)
REFUSALS = [
    ({"total": 2, "correct": 2}, 409, "2 is fewer than the 3 exercises this run recorded"),
    ({"total": 3, "correct": 4}, 400, "4 correct is more than 3 questions"),
    ({"total": 5, "correct": 5}, 409, "1 of its 3 recorded exercises is not correct"),
    ({"total": 5}, 400, "total_questions and correct_questions go together"),
    ({"mastered": 4}, 409, "4 units mastered, but the run has only 3 questions"),
    ({"mastered": -1}, 400, "mastered_units: must not be negative"),
    ({"pct": 120}, 400, "pct_complete: must be 0 to 100"),
    ({"require": "correct"}, 409, "'correct': get q2 right first"),
    ({"require": "attempted", "total": 4, "correct": 2}, 409, "3 of 4 questions answered"),
    ({"require": "sometimes"}, 400, "require: must be one of nothing, attempted, correct"),
    ({"min_active_minutes": 60}, 409, "60 focused minutes needed"),
    ({"min_active_minutes": "ten"}, 400, "min_active_minutes: must be a number"),
    ({"xp": -1}, 400, "xp_earned: must not be negative"),
]


async def post(jp_fetch, run_id, route, payload):
    return body(
        await jp_fetch(
            "timeback", "api", "runs", run_id, route, method="POST", body=json.dumps(payload)
        )
    )


async def test_a_claim_is_checked_against_the_record_and_xp_follows_the_policy(
    jp_serverapp, jp_fetch, jp_root_dir
):
    ext = await started(jp_serverapp)
    path = write_notebook(
        jp_root_dir, "quiz.ipynb", {"schema_version": 2, "activity": {**QUIZ, "xp": 10}}
    )
    run = body(
        await jp_fetch("timeback", "api", "runs", method="POST", body=json.dumps({"path": path}))
    )["run"]
    for exercise, correct in (("q1", True), ("q2", False), ("q3", True)):
        await post(jp_fetch, run["id"], "exercises", {"exercise": exercise, "correct": correct})

    for claim, status, words in REFUSALS:
        with pytest.raises(HTTPClientError) as err:
            await post(jp_fetch, run["id"], "complete", claim)
        assert err.value.code == status, claim
        assert words in json.loads(err.value.response.body)["message"], claim
    assert ext.store.get_completion(run["id"]) is None  # nothing written by a refusal

    # all right on the first attempt: the expected XP and the bonus; a claim never above it
    await post(jp_fetch, run["id"], "exercises", {"exercise": "q2", "correct": True})
    done = await post(jp_fetch, run["id"], "complete", {"require": "correct", "xp": 99})
    outcome = done["xp_outcome"]
    assert (done["xp_earned"], done["metrics"]["xpEarned"], outcome["awarded"]) == (12.5,) * 3
    assert outcome["rule"] == "perfect_first_attempt"
    assert outcome["reasons"] == [
        "12.5 XP: 3/3 correct on the first attempt: the expected 10 XP + 25% bonus",
        "claimed 99 XP, more than the policy allows: 12.5 XP",
    ]
    assert done["xp_capped"] is True and outcome["capped"] is True
    assert done["run"]["completion"]["xp_outcome"] == outcome

    # the server remembers the outcome: the run, and a repeat, answer it
    again = body(await jp_fetch("timeback", "api", "runs", run["id"]))["run"]
    assert again["completion"]["xp_outcome"] == outcome
    repeat = await post(jp_fetch, run["id"], "complete", {"xp": 1})
    assert repeat["already_completed"] is True
    assert (repeat["xp_earned"], repeat["xp_outcome"]) == (12.5, outcome)


async def test_without_questions_an_activity_earns_xp_only_if_its_author_says_so(
    jp_serverapp, jp_fetch, jp_root_dir
):
    await started(jp_serverapp)
    outcomes = {}
    for name, extra in (("reading", {}), ("verified", {"xp_without_questions": True})):
        activity = {**QUIZ, "id": name, "xp": 4, **extra}
        path = write_notebook(
            jp_root_dir, f"{name}.ipynb", {"schema_version": 2, "activity": activity}
        )
        run = body(
            await jp_fetch(
                "timeback", "api", "runs", method="POST", body=json.dumps({"path": path})
            )
        )["run"]
        outcomes[name] = (await post(jp_fetch, run["id"], "complete", {"xp": 4}))["xp_outcome"]
    assert outcomes["reading"]["awarded"] == 0
    assert "once a quiz verifies it" in outcomes["reading"]["reason"]
    assert outcomes["verified"]["awarded"] == 4
    assert "allowed by the author" in outcomes["verified"]["reason"]
