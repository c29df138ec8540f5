"""The one rule by which the relay's API, pages and live answers word an error."""

from __future__ import annotations

import sys

from tornado import web

from timeback_jupyter.relay.handlers import error_message


def raised(err: Exception):
    try:
        raise err
    except Exception:
        return sys.exc_info()


def test_a_message_without_arguments_keeps_its_percent_signs_single() -> None:
    # tornado stores an argument-less message with every % doubled
    assert error_message("Bad Request", raised(web.HTTPError(400, "over 100% of a day"))) == (
        "over 100% of a day"
    )


def test_a_message_with_arguments_is_formatted() -> None:
    err = web.HTTPError(404, "no activity %r", "fractions-1")
    assert error_message("Not Found", raised(err)) == "no activity 'fractions-1'"


def test_without_a_specific_message_the_reason_phrase_is_said() -> None:
    assert error_message("Forbidden", raised(web.HTTPError(403))) == "Forbidden"
    assert error_message("Internal Server Error", None) == "Internal Server Error"
    assert error_message("Internal Server Error", raised(ValueError("secret detail"))) == (
        "Internal Server Error"
    )
