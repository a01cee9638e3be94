"""The hand-written migration on an empty database: idempotent, partitioned, append-only audit.

Each test run gets a scratch database of its own on the server (dropped afterwards), so the
checks see exactly what the migration built and nothing the app or other tests added.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from correction_monitor.migrations import alembic_config, migrate

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {
    "org_units",
    "officers",
    "officer_tokens",
    "geometries",
    "admin_areas",
    "geofences",
    "subjects",
    "subject_exclusion_zones",
    "devices",
    "fixes",
    "subject_eval_state",
    "alerts",
    "events",
    "event_cursors",
    "timers",
    "job_runs",
    "audit_log",
    "alembic_version",
}

# Every column of every ordinary and partitioned table: what "the schema" means when
# checking that a second migration run changed nothing.
SCHEMA_SNAPSHOT = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2
"""


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture
def scratch_url(server_database_url: str) -> Iterator[str]:
    """An empty database on the test server, dropped after the test."""
    name = f"cm_mig_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_database_url, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server_database_url)._replace(path="/" + name))
    finally:
        asyncio.run(_admin(server_database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_twice_builds_the_schema_once(scratch_url: str) -> None:
    migrate(scratch_url)
    first = asyncio.run(_query(scratch_url, SCHEMA_SNAPSHOT))
    migrate(scratch_url)
    second = asyncio.run(_query(scratch_url, SCHEMA_SNAPSHOT))
    assert [tuple(r) for r in first] == [tuple(r) for r in second]

    tables = {r["relname"] for r in first}
    assert tables >= EXPECTED_TABLES, EXPECTED_TABLES - tables
    versions = asyncio.run(_query(scratch_url, "SELECT version_num FROM alembic_version"))
    head = ScriptDirectory.from_config(alembic_config(scratch_url)).get_current_head()
    assert [r["version_num"] for r in versions] == [head]


def test_fixes_is_range_partitioned_by_utc_day(scratch_url: str) -> None:
    migrate(scratch_url)

    async def check() -> None:
        # A session in China's time zone, as an operator's psql would be: partitions must
        # still cut at UTC midnight.
        conn = await asyncpg.connect(scratch_url, server_settings={"TimeZone": "Asia/Shanghai"})
        try:
            strategy = await conn.fetchval(
                "SELECT p.partstrat::text FROM pg_partitioned_table p "
                "JOIN pg_class c ON c.oid = p.partrelid WHERE c.relname = 'fixes'"
            )
            assert strategy == "r"
            key = await conn.fetchval("SELECT pg_get_partkeydef('fixes'::regclass)")
            assert key == "RANGE (ts)"

            assert await conn.fetchval("SELECT cm_ensure_fix_partition('2026-11-20')") is True
            assert await conn.fetchval("SELECT cm_ensure_fix_partition('2026-11-20')") is False
            partitions = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'fixes'::regclass"
            )
            assert [r["relname"] for r in partitions] == ["fixes_20261120"]

            insert = (
                "INSERT INTO fixes (ts, subject_id, device_id, lon_e7, lat_e7, client_key, "
                "accuracy_m, flags) VALUES ($1::timestamptz, 1, 1, 1163000000, 399000000, 0, 5, 0) "
                "RETURNING tableoid::regclass::text"
            )
            # 23:30 UTC is already the next day in Beijing, yet belongs to the UTC day.
            assert await conn.fetchval(insert, _ts("2026-11-20T23:30:00Z")) == "fixes_20261120"
            assert await conn.fetchval(insert, _ts("2026-11-20T00:00:00Z")) == "fixes_20261120"
            with pytest.raises(asyncpg.CheckViolationError, match="no partition"):
                await conn.fetchval(insert, _ts("2026-11-21T00:00:00Z"))
            with pytest.raises(asyncpg.CheckViolationError, match="no partition"):
                await conn.fetchval(insert, _ts("2026-11-19T23:59:59Z"))
        finally:
            await conn.close()

    asyncio.run(check())


def test_audit_log_refuses_update_delete_and_truncate(scratch_url: str) -> None:
    migrate(scratch_url)

    async def check() -> None:
        conn = await asyncpg.connect(scratch_url)
        try:
            await conn.execute(
                "INSERT INTO audit_log (action, subject_id, purpose) VALUES ('track.read', 7, 'x')"
            )
            for statement in (
                "UPDATE audit_log SET purpose = 'rewritten'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
            ):
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await conn.execute(statement)
            rows = await conn.fetch("SELECT action, subject_id, purpose FROM audit_log")
            assert [tuple(r) for r in rows] == [("track.read", 7, "x")]
        finally:
            await conn.close()

    asyncio.run(check())
