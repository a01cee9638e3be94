"""Daily fix partitions are created once, even when many processes race to create them."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import asyncpg
import pytest

pytestmark = pytest.mark.integration


async def test_concurrent_creation_of_one_day_never_fails(database_url: str) -> None:
    day = date(2031, 1, 1) + timedelta(days=int(asyncio.get_running_loop().time()) % 300)
    conns = [await asyncpg.connect(database_url) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(c.fetchval("SELECT cm_ensure_fix_partition($1::date)", day) for c in conns)
        )
        assert sorted(results) == [False] * 7 + [True]
        assert await conns[0].fetchval("SELECT cm_ensure_fix_partition($1::date)", day) is False
    finally:
        for c in conns:
            await c.close()
