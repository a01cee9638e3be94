"""Messages to a subject's app: sent once per dedupe key, read in order, read receipts kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from correction_monitor.adapters.db import create_pool
from correction_monitor.domain.messages import MessageKind, NewMessage
from correction_monitor.domain.models import NewSubject, SubjectCategory, SupervisionLevel
from correction_monitor.service.unit_of_work import PostgresUnitOfWork
from tests.conftest import unique

pytestmark = pytest.mark.integration

AT = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _subject(pool: asyncpg.Pool) -> int:
    async with PostgresUnitOfWork(pool) as uow:
        unit = await uow.org_units.add(unique("m"), "城关司法所", None, "Asia/Shanghai")
        subject = await uow.subjects.add(
            NewSubject(
                "李四",
                unit.id,
                SupervisionLevel.NORMAL,
                SubjectCategory.PROBATION,
                date(2030, 1, 1),
                date(2031, 1, 1),
                None,
                (),
                None,
                None,
                None,
                None,
                None,
            )
        )
    return subject.id


async def test_a_dedupe_key_sends_once_and_reads_keep_the_first_receipt(
    pool: asyncpg.Pool,
) -> None:
    subject_id = await _subject(pool)
    reminder = NewMessage(
        subject_id, MessageKind.REMINDER, "签到窗口即将关闭", {"checkin_id": 7}, "r:7"
    )
    async with PostgresUnitOfWork(pool) as uow:
        sent = await uow.messages.add(
            [reminder, NewMessage(subject_id, MessageKind.NOTICE, "请回电")], AT
        )
    assert [m.kind for m in sent] == ["reminder", "notice"]
    assert sent[0].data == {"checkin_id": 7}
    assert sent[0].created_at == AT
    async with PostgresUnitOfWork(pool) as uow:
        assert await uow.messages.add([reminder], AT + timedelta(minutes=1)) == []
        listed = await uow.messages.since(subject_id, 0, 100)
        assert [m.id for m in listed] == [m.id for m in sent]
        assert [m.id for m in await uow.messages.since(subject_id, sent[0].id, 100)] == [sent[1].id]
        first = await uow.messages.mark_read(subject_id, sent[0].id, AT + timedelta(hours=1))
        again = await uow.messages.mark_read(subject_id, sent[0].id, AT + timedelta(hours=2))
        assert first == again == AT + timedelta(hours=1)
        assert await uow.messages.mark_read(subject_id + 10_000, sent[0].id, AT) is None
