"""Who may see and do what (RULES.md §4): roles and jurisdiction scopes.

An officer (司法所) and a supervisor (所长) see their own station; a county administrator
(县局) sees every unit under their county; an auditor reads (never writes) within their unit's
subtree; an administrator sees everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    COUNTY_ADMIN = "county_admin"
    AUDITOR = "auditor"
    ADMIN = "admin"


# Roles allowed to act (not only read) on alerts and subjects of their jurisdiction.
CASEWORK_ROLES = frozenset({Role.OFFICER, Role.SUPERVISOR, Role.COUNTY_ADMIN, Role.ADMIN})
# Roles allowed to define fences, import boundaries and create org units.
CONFIGURATION_ROLES = frozenset({Role.COUNTY_ADMIN, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated officer and the org units they may see.

    ``scope`` is ``None`` for an administrator (everything), otherwise the ids of the org
    units within their jurisdiction.
    """

    officer_id: int
    username: str
    role: Role
    org_unit_id: int
    scope: frozenset[int] | None

    def sees(self, org_unit_id: int) -> bool:
        return self.scope is None or org_unit_id in self.scope

    def may(self, roles: frozenset[Role]) -> bool:
        return self.role in roles


def jurisdiction_root_is_subtree(role: Role) -> bool:
    """Whether the role's jurisdiction covers the whole subtree under its own unit."""
    return role in (Role.COUNTY_ADMIN, Role.AUDITOR)


def subtree_ids(parents: Iterable[tuple[int, int | None]], root_id: int) -> frozenset[int]:
    """The ids of ``root_id`` and every unit below it, from (unit id, parent id) pairs."""
    below: dict[int, list[int]] = {}
    for unit_id, parent_id in parents:
        if parent_id is not None:
            below.setdefault(parent_id, []).append(unit_id)
    found: set[int] = set()
    stack = [root_id]
    while stack:
        unit_id = stack.pop()
        if unit_id not in found:
            found.add(unit_id)
            stack.extend(below.get(unit_id, ()))
    return frozenset(found)
