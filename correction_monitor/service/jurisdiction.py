"""Finding what a command names, within the caller's jurisdiction (RULES.md §4).

A subject outside the caller's jurisdiction is answered exactly like one that does not
exist, so nobody learns of others' subjects by trying ids.
"""

from __future__ import annotations

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.models import OrgUnit, Subject
from correction_monitor.service.errors import Forbidden, InvalidInput, NotFound
from correction_monitor.service.unit_of_work import UnitOfWork


async def visible_unit(uow: UnitOfWork, who: Principal, code: str) -> OrgUnit:
    """The org unit of ``code`` where ``who`` may act: an unknown code is bad input, one
    outside the jurisdiction is forbidden (org units are not secret, subjects are)."""
    try:
        unit = await uow.org_units.get_by_code(code)
    except stored.NotFound as exc:
        raise InvalidInput("unknown_org_unit", f"org unit {code!r} does not exist") from exc
    if not who.sees(unit.id):
        raise Forbidden(f"org unit {code!r} is outside your jurisdiction")
    return unit


async def visible_subject(uow: UnitOfWork, who: Principal, subject_id: int) -> Subject:
    """The subject if ``who``'s jurisdiction covers it; NotFound otherwise."""
    try:
        subject = await uow.subjects.get(subject_id)
    except stored.NotFound as exc:
        raise NotFound(f"subject {subject_id}") from exc
    if not who.sees(subject.org_unit_id):
        raise NotFound(f"subject {subject_id}")
    return subject
