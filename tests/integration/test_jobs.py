"""Scheduled upkeep jobs against the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from correction_monitor.adapters import officers
from correction_monitor.adapters.db import create_pool
from correction_monitor.service.auth import new_token, token_hash
from correction_monitor.service.bootstrap import create_officer
from correction_monitor.service.jobs import purge_expired_tokens
from tests.conftest import unique

pytestmark = pytest.mark.integration


async def test_expired_officer_tokens_are_purged_a_day_later(database_url: str) -> None:
    officer_id = await create_officer(
        database_url,
        username=unique("u"),
        password="s3cret-pass",
        role="officer",
        org_code=unique("o"),
    )
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        now = datetime.now(UTC)
        old, recent, live = new_token(), new_token(), new_token()
        async with pool.acquire() as conn:
            await officers.store_token(conn, token_hash(old), officer_id, now - timedelta(days=2))
            await officers.store_token(
                conn, token_hash(recent), officer_id, now - timedelta(hours=1)
            )
            await officers.store_token(conn, token_hash(live), officer_id, now + timedelta(hours=1))
        await purge_expired_tokens(pool)
        async with pool.acquire() as conn:
            kept = {
                bytes(r["token_hash"])
                for r in await conn.fetch(
                    "SELECT token_hash FROM officer_tokens WHERE officer_id = $1", officer_id
                )
            }
        assert kept == {token_hash(recent), token_hash(live)}
    finally:
        await pool.close()
