"""Refusals of the service layer as the API answers them."""

from __future__ import annotations

import pytest

from correction_monitor.service import errors
from correction_monitor.web.dispatch import STATUS, api_error

pytestmark = pytest.mark.unit


def test_every_kind_of_refusal_has_its_status() -> None:
    kinds = {
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.ServiceError)
        and value is not errors.ServiceError
    }
    assert kinds == set(STATUS)


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [
        (
            errors.InvalidInput("invalid_geometry", "bow-tie", problem="self_intersection"),
            400,
            {"code": "invalid_geometry", "message": "bow-tie!", "problem": "self_intersection"},
        ),
        (
            errors.Unauthenticated("invalid_credentials", "no"),
            401,
            {"code": "invalid_credentials", "message": "no!"},
        ),
        (errors.Forbidden("not yours"), 403, {"code": "forbidden", "message": "not yours!"}),
        (
            errors.NotFound("subject 7"),
            404,
            {"code": "not_found", "message": "subject 7 not found!"},
        ),
        (
            errors.Conflict("alert_resolved", "done"),
            409,
            {"code": "alert_resolved", "message": "done!"},
        ),
        (
            errors.TooLarge("too_many_fixes", "at most 1000"),
            413,
            {"code": "too_many_fixes", "message": "at most 1000!"},
        ),
        (errors.TryAgain("try_again", "retry"), 503, {"code": "try_again", "message": "retry!"}),
    ],
)
def test_a_refusal_keeps_its_code_extra_fields_and_hint(
    refusal: errors.ServiceError, status: int, body: dict[str, str]
) -> None:
    answer = api_error(refusal, "!")
    assert answer.status == status
    assert answer.body() == {"error": body}


def test_an_unauthenticated_caller_is_told_the_routes_scheme() -> None:
    refusal = errors.Unauthenticated("unauthorized", "unknown device")
    assert api_error(refusal).headers == {}
    answer = api_error(refusal, challenge='Basic realm="x"')
    assert answer.headers == {"WWW-Authenticate": 'Basic realm="x"'}
    # Only a caller who did not prove who they are is challenged.
    assert api_error(errors.Forbidden("no"), challenge="Bearer").headers == {}


def test_a_retry_says_when_if_the_refusal_knows() -> None:
    assert api_error(errors.TryAgain("try_again", "retry")).headers == {}
    answer = api_error(errors.TryAgain("overloaded", "busy", retry_after_s=2))
    assert answer.headers == {"Retry-After": "2"}
    # The wait is a header, never a field of the answer.
    assert answer.body() == {"error": {"code": "overloaded", "message": "busy"}}
