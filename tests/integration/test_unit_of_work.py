"""The PostgreSQL unit of work: a commit writes the changes with their audit entries, timers
and events; an exception, before or during the commit, leaves none of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from correction_monitor.adapters.db import create_pool
from correction_monitor.adapters.errors import AlreadyExists
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.models import NewSubject, SubjectCategory, SupervisionLevel
from correction_monitor.domain.timers import Timer
from correction_monitor.policy import load_policy
from correction_monitor.service.bootstrap import bootstrap
from correction_monitor.service.devices import new_osmand_id
from correction_monitor.service.officers import CreateOfficer
from correction_monitor.service.unit_of_work import PostgresUnitOfWork
from tests.conftest import unique

pytestmark = pytest.mark.integration

DUE = datetime(2030, 1, 1, tzinfo=UTC)


class Boom(Exception):
    pass


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # One connection: a unit of work that failed to give its connection back would hang
    # the next one.
    pool = await create_pool(database_url, min_size=1, max_size=1)
    yield pool
    await pool.close()


async def _written(pool: asyncpg.Pool, tag: str) -> dict[str, int]:
    """How many rows of each kind the work tagged ``tag`` left behind."""
    async with pool.acquire() as conn:
        return {
            "org_units": await conn.fetchval("SELECT count(*) FROM org_units WHERE code = $1", tag),
            "audit": await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE request_id = $1", tag
            ),
            "timers": await conn.fetchval("SELECT count(*) FROM timers WHERE key = $1", tag),
            "events": await conn.fetchval(
                "SELECT count(*) FROM events WHERE data->>'tag' = $1", tag
            ),
        }


async def _work(uow: PostgresUnitOfWork, tag: str, *, event_unit: int | None = None) -> int:
    """Inside an open unit of work: a change, an audit entry, a timer and two events."""
    unit = await uow.org_units.add(tag, "城关司法所", None, "Asia/Shanghai")
    uow.audit(officer_id=None, action="test.work", request_id=tag, detail={"unit": unit.id})
    uow.schedule(Timer("test.deadline", tag, DUE, {"unit": unit.id}))
    for _ in range(2):
        uow.emit(
            DomainEvent(
                EventName.SUBJECT_UPDATED,
                unit.id if event_unit is None else event_unit,
                data={"tag": tag},
            )
        )
    return unit.id


async def test_a_commit_writes_the_change_audit_timer_and_events(pool: asyncpg.Pool) -> None:
    tag = unique("uow")
    uow = PostgresUnitOfWork(pool)
    async with uow:
        unit_id = await _work(uow, tag)
    assert await _written(pool, tag) == {"org_units": 1, "audit": 1, "timers": 1, "events": 2}
    async with pool.acquire() as conn:
        events = await conn.fetch(
            "SELECT id, name, org_unit_id FROM events WHERE data->>'tag' = $1 ORDER BY id", tag
        )
        timer = await conn.fetchrow("SELECT due_at, payload FROM timers WHERE key = $1", tag)
    assert [(e["name"], e["org_unit_id"]) for e in events] == [("subject.updated", unit_id)] * 2
    assert events[1]["id"] == events[0]["id"] + 1
    assert timer is not None
    assert (timer["due_at"], timer["payload"]) == (DUE, {"unit": unit_id})
    # The same unit of work opens again, as a transaction of its own.
    async with uow:
        assert (await uow.org_units.get(unit_id)).code == tag


async def _failing_work(pool: asyncpg.Pool, tag: str) -> None:
    async with PostgresUnitOfWork(pool) as uow:
        await _work(uow, tag)
        raise Boom


async def test_an_exception_rolls_back_everything(pool: asyncpg.Pool) -> None:
    tag = unique("uow")
    with pytest.raises(Boom):
        await _failing_work(pool, tag)
    assert await _written(pool, tag) == {"org_units": 0, "audit": 0, "timers": 0, "events": 0}


async def test_a_failure_while_committing_rolls_back_everything(pool: asyncpg.Pool) -> None:
    tag = unique("uow")
    # The events are written last; one naming no org unit breaks a foreign key there, after
    # the change, the audit entry and the timer were written.
    uow = PostgresUnitOfWork(pool)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with uow:
            await _work(uow, tag, event_unit=2**31 - 1)
    assert await _written(pool, tag) == {"org_units": 0, "audit": 0, "timers": 0, "events": 0}
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()


async def test_a_taken_device_identifier_leaves_the_work_usable(pool: asyncpg.Pool) -> None:
    tag = unique("uow")
    async with PostgresUnitOfWork(pool) as uow:
        unit = await uow.org_units.add(tag, "城关司法所", None, "Asia/Shanghai")
        subject = await uow.subjects.add(
            NewSubject(
                name="张三",
                org_unit_id=unit.id,
                supervision_level=SupervisionLevel.NORMAL,
                category=SubjectCategory.PAROLE,
                term_start=date(2026, 1, 1),
                term_end=date(2026, 12, 31),
                activity_area_id=None,
                exclusion_zone_ids=(),
                home=None,
                home_crs=None,
                curfew=None,
                responsible_officer_id=None,
                responsible_supervisor_id=None,
            )
        )
        taken, free = new_osmand_id(), new_osmand_id()
        first = await uow.devices.add(subject.id, tag.encode(), taken, "android")
        # A collision fails one statement, not the transaction: the next draw goes through.
        with pytest.raises(AlreadyExists):
            await uow.devices.add(subject.id, b"other " + tag.encode(), taken, None)
        second = await uow.devices.add(subject.id, b"other " + tag.encode(), free, None)
    async with PostgresUnitOfWork(pool) as uow:
        assert [d.id for d in await uow.devices.list_for(subject.id)] == [first.id, second.id]


async def test_the_composition_root_runs_handlers_on_postgresql(pool: asyncpg.Pool) -> None:
    services = bootstrap(lambda: PostgresUnitOfWork(pool), policy=load_policy())
    username, code = unique("u"), unique("o")
    officer = await services.handle(
        CreateOfficer(username=username, password="s3cret-pass", role="officer", org_code=code)
    )
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT action, officer_id, detail FROM audit_log WHERE detail->>'officer_id' = $1",
            str(officer.id),
        )
    assert row is not None
    assert (row["action"], row["officer_id"]) == ("officer.create", None)
    assert row["detail"]["org_unit"] == code


async def test_event_data_is_stored_as_emitted(pool: asyncpg.Pool) -> None:
    # The events and the commit go to the server as one message with the events as a text
    # constant: quotes, backslashes, escapes and any script come through unchanged.
    tag = unique("uow")
    data = {
        "tag": tag,
        "quote": "it's \"quoted\" ''",
        "backslash": "C:\\path\\n \\' \\\\",
        "text": "报到 ✓ \n\t end; COMMIT; --",
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
    }
    uow = PostgresUnitOfWork(pool)
    async with uow:
        unit = await uow.org_units.add(tag, "城关司法所", None, "Asia/Shanghai")
        for n in range(3):
            uow.emit(DomainEvent(EventName.SUBJECT_UPDATED, unit.id, data=data | {"n": n}))
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, subject_id, alert_id, data FROM events WHERE data->>'tag' = $1 ORDER BY id",
            tag,
        )
        assert not conn.is_in_transaction()
    assert [r["data"] for r in rows] == [data | {"n": n} for n in range(3)]
    assert [r["id"] - rows[0]["id"] for r in rows] == [0, 1, 2]
    assert {(r["subject_id"], r["alert_id"]) for r in rows} == {(None, None)}
