"""How large a request body each route accepts, in one table.

The body-limit middleware (``middlewares.body_limit``) answers 413 ``body_too_large`` to a
body over its route's limit without reading it whole: at once when ``Content-Length``
declares it, else as soon as the bytes read pass the limit (a chunked or compressed body).
The ingest front hands native uploads over the same limit to aiohttp, which refuses them so.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from correction_monitor.web.errors import ApiError

MIB: Final = 1 << 20

PHONE_BODY_LIMIT: Final = 1 * MIB
"""The phone routes' limit, fixed by the contract. 1000 fixes with every field sent are
about 300 KB, so no phone comes near it."""

DEFAULT_BODY_LIMIT: Final = 1 * MIB
"""Every route not named in :data:`BODY_LIMITS`, the subject's app (``/api/v1/me/...``)
included: officer and app documents are a few KB."""

BODY_LIMITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "/api/v1/fixes": PHONE_BODY_LIMIT,
        "/osmand/": PHONE_BODY_LIMIT,
        "/osmand": PHONE_BODY_LIMIT,
        "/owntracks": PHONE_BODY_LIMIT,
        # DataV files: a province with every district at full detail is several MB.
        "/api/v1/boundaries/import": 32 * MIB,
    }
)
"""Limits in bytes by route, as aiohttp names it (the resource's canonical path)."""


def body_limit(route: str) -> int:
    """The largest body ``route`` accepts, in bytes.

    >>> body_limit("/api/v1/fixes"), body_limit("/api/v1/boundaries/import") // MIB
    (1048576, 32)
    >>> body_limit("/api/v1/subjects/{id}") == DEFAULT_BODY_LIMIT
    True
    """
    return BODY_LIMITS.get(route, DEFAULT_BODY_LIMIT)


def body_too_large(limit: int) -> ApiError:
    """The 413 answered to a body over ``limit`` bytes.

    >>> body_too_large(MIB).body()["error"]["message"]
    'the request body is larger than this route accepts (1 MiB, 1048576 bytes)'
    """
    size = f"{limit // MIB} MiB, " if limit % MIB == 0 else ""
    return ApiError(
        413,
        "body_too_large",
        f"the request body is larger than this route accepts ({size}{limit} bytes)",
    )
