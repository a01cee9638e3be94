"""Who is calling: officer bearer tokens, resolved to a ``Principal`` with its scope."""

from __future__ import annotations

from aiohttp import web

from correction_monitor.adapters import officers, org_units
from correction_monitor.domain.access import Principal, Role, jurisdiction_root_is_subtree
from correction_monitor.service.auth import token_hash
from correction_monitor.web.errors import forbidden, unauthorized
from correction_monitor.web.keys import POOL, PRINCIPAL


def parse_bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def bearer_token(request: web.Request) -> str | None:
    return parse_bearer(request.headers.get("Authorization", ""))


async def officer(request: web.Request, roles: frozenset[Role] | None = None) -> Principal:
    """The authenticated officer of this request; 401 without a valid token, 403 when the
    officer's role is not among ``roles``."""
    cached = request.get(PRINCIPAL)
    if cached is None:
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        async with request.app[POOL].acquire() as conn:
            found = await officers.by_token(conn, token_hash(token))
            if found is None:
                raise unauthorized("the bearer token is unknown or has expired")
            role = Role(found.role)
            scope: frozenset[int] | None
            if role is Role.ADMIN:
                scope = None
            elif jurisdiction_root_is_subtree(role):
                scope = await org_units.subtree_ids(conn, found.org_unit_id)
            else:
                scope = frozenset({found.org_unit_id})
        cached = Principal(found.id, found.username, role, found.org_unit_id, scope)
        request[PRINCIPAL] = cached
    if roles is not None and not cached.may(roles):
        raise forbidden(f"role {cached.role.value!r} may not do this")
    return cached
