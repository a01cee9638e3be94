"""The process's connection pool releases connections without a reset round trip, and
still never hands out a connection inside a transaction."""

from __future__ import annotations

import asyncpg
import pytest

from correction_monitor.adapters.db import create_pool

pytestmark = pytest.mark.integration


async def test_release_sends_no_reset_query(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'pool-test'")
        # asyncpg's default reset would have run RESET ALL on release.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "pool-test"
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE pool_probe (x int)")
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
            # Released without commit or rollback, as an exception between statements would.
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.close()


async def test_a_failed_statement_does_not_poison_the_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.PostgresError):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT 1 / 0")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await pool.close()
