"""Notification channels and deliveries in PostgreSQL (``notification_channels``,
``notification_deliveries``, ``notification_robot_sends``).

A delivery is one (channel, event) pair, unique, written by the notifications consumer in
its batch's transaction. Senders claim due ones in short transactions: ``FOR UPDATE SKIP
LOCKED``, then a lease (``next_attempt_at`` moved past the send's timeout) and one more
``attempts``, so no two senders send a delivery at once; the outcome is recorded only while
``attempts`` is still the claimed one, so a sender whose lease ran out cannot overwrite the
next claim's outcome. Times always come from the service's clock, never ``now()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from correction_monitor.adapters.errors import NotFound
from correction_monitor.domain.notifications import (
    ROBOT_KINDS,
    Channel,
    ChannelKind,
    Claimed,
    DeliveryRecord,
    DueDelivery,
    Failure,
    Notice,
    RobotMinute,
)

_CHANNEL = """
id, org_unit_id, kind, url, secret, settings, events, active, created_by, created_at
"""
INSERT_CHANNEL = f"""
INSERT INTO notification_channels (org_unit_id, kind, url, secret, settings, events,
    created_by, created_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)
RETURNING {_CHANNEL}
"""
GET_CHANNEL = f"SELECT {_CHANNEL} FROM notification_channels WHERE id = $1"
CHANNELS_BY_ID = f"SELECT {_CHANNEL} FROM notification_channels WHERE id = ANY($1::int[])"
LIST_CHANNELS = f"""
SELECT {_CHANNEL} FROM notification_channels
WHERE ($1::int[] IS NULL OR org_unit_id = ANY($1::int[])) AND ($2 OR active)
ORDER BY id
"""
DEACTIVATE = "UPDATE notification_channels SET active = false WHERE id = $1 AND active"

# The channels of the event's unit and of every unit above it that want the event: a
# channel of a unit receives its whole subtree.
FAN_OUT = """
WITH RECURSIVE up AS (
    SELECT id, parent_id FROM org_units WHERE id = $3
    UNION ALL
    SELECT o.id, o.parent_id FROM org_units o JOIN up ON o.id = up.parent_id
)
INSERT INTO notification_deliveries (channel_id, event_id, next_attempt_at, created_at)
SELECT c.id, $1, $4, $4 FROM notification_channels c
WHERE c.active AND $2 = ANY(c.events) AND c.org_unit_id IN (SELECT id FROM up)
ON CONFLICT (channel_id, event_id) DO NOTHING
"""

# The same for a batch of events in one statement.
FAN_OUT_MANY = """
WITH RECURSIVE up (event_id, name, unit_id) AS (
    SELECT e.id, e.name, e.unit_id
    FROM unnest($1::bigint[], $2::text[], $3::int[]) AS e (id, name, unit_id)
    UNION ALL
    SELECT up.event_id, up.name, o.parent_id FROM up JOIN org_units o ON o.id = up.unit_id
    WHERE o.parent_id IS NOT NULL
)
INSERT INTO notification_deliveries (channel_id, event_id, next_attempt_at, created_at)
SELECT c.id, up.event_id, $4, $4 FROM up
JOIN notification_channels c ON c.org_unit_id = up.unit_id AND c.active AND up.name = ANY(c.events)
ON CONFLICT (channel_id, event_id) DO NOTHING
"""

# Webhooks and SMS: no rate limit, claimed in batches across channels.
CLAIM_DUE = """
WITH due AS (
    SELECT d.id FROM notification_deliveries d
    JOIN notification_channels c ON c.id = d.channel_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND c.active
      AND c.kind <> ALL($4::text[])
    ORDER BY d.next_attempt_at
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE notification_deliveries d SET next_attempt_at = $2, attempts = d.attempts + 1
FROM due WHERE d.id = due.id
RETURNING d.id, d.channel_id, d.event_id, d.attempts
"""
ROBOT_CHANNELS_DUE = """
SELECT DISTINCT d.channel_id FROM notification_deliveries d
JOIN notification_channels c ON c.id = d.channel_id
WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND c.active
  AND c.kind = ANY($2::text[])
LIMIT $3
"""
# One sender at a time works out a robot's minute: the channel's row is its lock.
LOCK_CHANNEL = """
SELECT id FROM notification_channels WHERE id = $1 AND active FOR UPDATE SKIP LOCKED
"""
FORGET_OLD_SENDS = "DELETE FROM notification_robot_sends WHERE channel_id = $1 AND sent_at <= $2"
SENDS_SINCE = """
SELECT count(*) AS sent, min(sent_at) AS oldest FROM notification_robot_sends
WHERE channel_id = $1 AND sent_at > $2
"""
ROBOT_DUE = """
SELECT id, digest_id = id AS carrier FROM notification_deliveries
WHERE channel_id = $1 AND status = 'pending' AND next_attempt_at <= $2
ORDER BY id
LIMIT $3
FOR UPDATE SKIP LOCKED
"""
CLAIM_IDS = """
UPDATE notification_deliveries SET next_attempt_at = $2, attempts = attempts + 1
WHERE id = ANY($1::bigint[])
RETURNING id, channel_id, event_id, attempts
"""
RECORD_SENDS = """
INSERT INTO notification_robot_sends (channel_id, sent_at)
SELECT $1, $2 FROM generate_series(1, $3)
"""
FOLD = """
UPDATE notification_deliveries SET
    digest_id = $2,
    status = CASE WHEN id = $2 THEN 'pending' ELSE 'digested' END
WHERE id = ANY($1::bigint[])
"""
POSTPONE = "UPDATE notification_deliveries SET next_attempt_at = $2 WHERE id = ANY($1::bigint[])"
DIGEST_MEMBERS = """
SELECT digest_id, event_id FROM notification_deliveries
WHERE digest_id = ANY($1::bigint[]) ORDER BY digest_id, id
"""

NOTICES = """
SELECT e.id, e.name, e.occurred_at, e.subject_id, e.alert_id, e.data,
       o.code AS org_code, coalesce(o.timezone, 'Asia/Shanghai') AS timezone,
       s.name AS subject_name, coalesce(a.display_name, a.username) AS assignee_name
FROM events e
LEFT JOIN org_units o ON o.id = e.org_unit_id
LEFT JOIN subjects s ON s.id = e.subject_id
LEFT JOIN officers a ON a.id = CASE WHEN jsonb_typeof(e.data->'assignee_id') = 'number'
                                    THEN (e.data->>'assignee_id')::numeric END
WHERE e.id = ANY($1::bigint[])
"""

DELIVERED = """
UPDATE notification_deliveries d SET status = 'delivered', delivered_at = $3, last_error = NULL
FROM unnest($1::bigint[], $2::int[]) AS r(id, attempts)
WHERE d.id = r.id AND d.attempts = r.attempts AND d.status = 'pending'
"""
# A digest's members are delivered with it.
DIGEST_DELIVERED = """
UPDATE notification_deliveries SET delivered_at = $2
WHERE digest_id = ANY($1::bigint[]) AND status = 'digested'
"""
NOT_DELIVERED = """
UPDATE notification_deliveries d SET
    status = CASE WHEN r.give_up THEN 'failed' ELSE 'pending' END,
    next_attempt_at = r.retry_at,
    last_error = r.error
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::bool[])
    AS r(id, attempts, retry_at, error, give_up)
WHERE d.id = r.id AND d.attempts = r.attempts AND d.status = 'pending'
"""
DELIVERIES = """
SELECT d.id, d.event_id, e.name AS event, d.status, d.attempts, d.next_attempt_at,
       d.last_error, d.delivered_at, d.digest_id, d.created_at
FROM notification_deliveries d LEFT JOIN events e ON e.id = d.event_id
WHERE d.channel_id = $1 AND ($2::text IS NULL OR d.status = $2)
ORDER BY d.id DESC LIMIT $3
"""

ROBOTS = [k.value for k in ROBOT_KINDS]
ROBOT_WINDOW = timedelta(minutes=1)


def _channel(row: asyncpg.Record) -> Channel:
    settings = row["settings"]
    return Channel(
        id=row["id"],
        org_unit_id=row["org_unit_id"],
        kind=ChannelKind(row["kind"]),
        url=row["url"],
        secret=row["secret"],
        settings=dict(settings) if isinstance(settings, dict) else {},
        events=tuple(row["events"]),
        active=row["active"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


def _claimed(row: asyncpg.Record) -> Claimed:
    return Claimed(row["id"], row["channel_id"], row["event_id"], row["attempts"])


class PostgresNotifications:
    """The notifications repository over the unit of work's connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # -- channels ----------------------------------------------------------------------------

    async def add_channel(
        self,
        *,
        org_unit_id: int,
        kind: ChannelKind,
        url: str,
        secret: str | None,
        settings: dict[str, Any],
        events: Sequence[str],
        created_by: int | None,
        at: datetime,
    ) -> Channel:
        row = await self._conn.fetchrow(
            INSERT_CHANNEL, org_unit_id, kind.value, url, secret, settings, list(events),
            created_by, at,
        )  # fmt: skip
        return _channel(row)

    async def get_channel(self, channel_id: int) -> Channel:
        row = await self._conn.fetchrow(GET_CHANNEL, channel_id)
        if row is None:
            raise NotFound(f"notification channel {channel_id}")
        return _channel(row)

    async def channels(self, ids: Iterable[int]) -> dict[int, Channel]:
        rows = await self._conn.fetch(CHANNELS_BY_ID, list(ids))
        return {r["id"]: _channel(r) for r in rows}

    async def list_channels(
        self, org_unit_ids: frozenset[int] | None, *, include_inactive: bool
    ) -> list[Channel]:
        scope = None if org_unit_ids is None else sorted(org_unit_ids)
        return [_channel(r) for r in await self._conn.fetch(LIST_CHANNELS, scope, include_inactive)]

    async def deactivate(self, channel_id: int) -> bool:
        status: str = await self._conn.execute(DEACTIVATE, channel_id)
        return status == "UPDATE 1"

    # -- fan-out -----------------------------------------------------------------------------

    async def fan_out(self, event_id: int, name: str, org_unit_id: int, at: datetime) -> int:
        """Pending deliveries of the event to every channel that wants it; returns how many
        were new (a replayed event finds its pairs taken)."""
        status = await self._conn.execute(FAN_OUT, event_id, name, org_unit_id, at)
        return int(status.split()[-1])

    async def fan_out_many(self, events: Sequence[tuple[int, str, int]], at: datetime) -> int:
        """:meth:`fan_out` for many (event id, name, org unit id) in one statement."""
        if not events:
            return 0
        ids, names, units = zip(*events, strict=True)
        status = await self._conn.execute(FAN_OUT_MANY, list(ids), list(names), list(units), at)
        return int(status.split()[-1])

    # -- claiming ----------------------------------------------------------------------------

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
        """Due deliveries to webhooks and SMS, leased to this sender."""
        rows = await self._conn.fetch(CLAIM_DUE, now, lease_until, limit, ROBOTS)
        return [_claimed(r) for r in rows]

    async def robot_channels_due(self, now: datetime, limit: int) -> list[int]:
        return [
            r["channel_id"] for r in await self._conn.fetch(ROBOT_CHANNELS_DUE, now, ROBOTS, limit)
        ]

    async def lock_robot(self, channel_id: int, now: datetime) -> RobotMinute | None:
        """Take the robot channel for this transaction and read its rolling minute; None
        when another sender holds it (or it was deactivated)."""
        if await self._conn.fetchval(LOCK_CHANNEL, channel_id) is None:
            return None
        start = now - ROBOT_WINDOW
        await self._conn.execute(FORGET_OLD_SENDS, channel_id, start)
        row = await self._conn.fetchrow(SENDS_SINCE, channel_id, start)
        return RobotMinute(row["sent"], row["oldest"])

    async def robot_due(self, channel_id: int, now: datetime, limit: int) -> list[DueDelivery]:
        rows = await self._conn.fetch(ROBOT_DUE, channel_id, now, limit)
        return [DueDelivery(r["id"], bool(r["carrier"])) for r in rows]

    async def fold(self, ids: Sequence[int]) -> None:
        """Make ``ids[0]`` the carrier of a digest of all ``ids``; the others are digested."""
        await self._conn.execute(FOLD, list(ids), ids[0])

    async def postpone(self, ids: Sequence[int], until: datetime) -> None:
        if ids:
            await self._conn.execute(POSTPONE, list(ids), until)

    async def claim_ids(self, ids: Sequence[int], lease_until: datetime) -> list[Claimed]:
        if not ids:
            return []
        return [_claimed(r) for r in await self._conn.fetch(CLAIM_IDS, list(ids), lease_until)]

    async def record_robot_sends(self, channel_id: int, at: datetime, count: int) -> None:
        if count:
            await self._conn.execute(RECORD_SENDS, channel_id, at, count)

    async def digest_members(self, carrier_ids: Sequence[int]) -> dict[int, list[int]]:
        """The events each digest carries, oldest first (the carrier's own included)."""
        members: dict[int, list[int]] = {}
        if carrier_ids:
            for row in await self._conn.fetch(DIGEST_MEMBERS, list(carrier_ids)):
                members.setdefault(row["digest_id"], []).append(row["event_id"])
        return members

    async def notices(self, event_ids: Iterable[int]) -> dict[int, Notice]:
        rows = await self._conn.fetch(NOTICES, list(set(event_ids)))
        return {
            r["id"]: Notice(
                event_id=r["id"],
                event=r["name"],
                occurred_at=r["occurred_at"],
                org_unit=r["org_code"],
                timezone=r["timezone"],
                subject_id=r["subject_id"],
                subject_name=r["subject_name"],
                alert_id=r["alert_id"],
                data=dict(r["data"]) if isinstance(r["data"], dict) else {},
                assignee_name=r["assignee_name"],
            )
            for r in rows
        }

    # -- outcomes ----------------------------------------------------------------------------

    async def record_delivered(
        self, delivered: Sequence[tuple[int, int]], at: datetime, carriers: Sequence[int]
    ) -> None:
        """Mark (id, attempts) delivered, with the members of the digests among them."""
        if delivered:
            ids, attempts = zip(*delivered, strict=True)
            await self._conn.execute(DELIVERED, list(ids), list(attempts), at)
        if carriers:
            await self._conn.execute(DIGEST_DELIVERED, list(carriers), at)

    async def record_failures(self, failures: Sequence[Failure]) -> None:
        if failures:
            await self._conn.execute(
                NOT_DELIVERED,
                [f.id for f in failures],
                [f.attempts for f in failures],
                [f.retry_at for f in failures],
                [f.error for f in failures],
                [f.give_up for f in failures],
            )

    async def deliveries(
        self, channel_id: int, status: str | None, limit: int
    ) -> list[DeliveryRecord]:
        rows = await self._conn.fetch(DELIVERIES, channel_id, status, limit)
        return [
            DeliveryRecord(
                id=r["id"],
                event_id=r["event_id"],
                event=r["event"],
                status=r["status"],
                attempts=r["attempts"],
                next_attempt_at=r["next_attempt_at"],
                last_error=r["last_error"],
                delivered_at=r["delivered_at"],
                digest_id=r["digest_id"],
                created_at=r["created_at"],
            )
            for r in rows
        ]
