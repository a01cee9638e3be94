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
        (errors.TryAgain("try_again", "retry"), 503, {"code": "try_again", "message": "retry!"}),
    ],
)
def test_a_refusal_keeps_its_code_extra_fields_and_hint(
    refusal: errors.ServiceError, status: int, body: dict[str, str]
) -> None:
    answer = api_error(refusal, "!")
    assert answer.status == status
    assert answer.body() == {"error": body}
