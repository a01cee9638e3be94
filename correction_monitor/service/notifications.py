"""Notifications through the event log: channels an administrator sets up, the consumer that
turns events into deliveries, and the sender that delivers them (docs/notifications.md).

- **Channels** (a webhook, a 钉钉 DingTalk or 企业微信 WeCom group robot, an SMS provider)
  belong to an org unit and receive the events they name from its whole subtree. Creating
  and deactivating one is audited; its secret is never shown again.
- **The consumer** (``notifications``) writes one pending delivery per (channel, event) in
  the consumer's own transaction, so a replayed batch writes none twice; it also sends the
  subject's app a message when a leave application is decided.
- **The sender** claims due deliveries in short transactions (``SKIP LOCKED`` and a lease),
  sends them concurrently outside any transaction, and records each outcome: delivered, or
  retried with backoff, or failed after the policy's ``max_attempts``. Effects outside
  PostgreSQL are at least once; receivers dedupe by the event id the payload carries.
  Robots get at most ``robot_per_minute`` messages in any rolling minute, counted in
  PostgreSQL across processes; a burst beyond that is folded into one digest.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from correction_monitor.adapters import errors as stored
from correction_monitor.domain.access import Principal
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import EventName, StoredEvent
from correction_monitor.domain.messages import MessageKind, NewMessage
from correction_monitor.domain.notifications import (
    ROBOT_KINDS,
    Answer,
    Channel,
    ChannelKind,
    Claimed,
    DeliveryRecord,
    DeliveryStatus,
    Failure,
    Notice,
    OutgoingRequest,
    Rendering,
    SmsProvider,
    build_request,
    judge,
    leave_decision_text,
    plan_robot_round,
    retry_delay_s,
)
from correction_monitor.policy import NotificationPolicy
from correction_monitor.service.command import Command
from correction_monitor.service.consumers import Consumer
from correction_monitor.service.errors import InvalidInput, NotFound
from correction_monitor.service.jurisdiction import visible_unit
from correction_monitor.service.unit_of_work import UnitOfWork

log = structlog.get_logger("correction_monitor.notifications")

KNOWN_EVENTS = frozenset(e.value for e in EventName)
MAX_URL = 2000
MAX_SECRET = 500
MAX_PHONE_NUMBERS = 1000  # Alibaba Cloud's limit per SendSms call
PHONE = re.compile(r"^\+?[0-9]{5,20}$")
# Query parameters of robots' urls that are credentials: never shown or audited.
CREDENTIAL_PARAMS = frozenset({"access_token", "key", "token"})


# -- channels --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlacedChannel:
    """A channel with its org unit's code, as the API shows it."""

    channel: Channel
    org_unit: str


def shown_url(url: str) -> str:
    """``url`` with its credential parameters masked (a robot's url carries its key).

    >>> shown_url("https://oapi.dingtalk.com/robot/send?access_token=abc")
    'https://oapi.dingtalk.com/robot/send?access_token=%2A%2A%2A'
    """
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (k, "***" if k.lower() in CREDENTIAL_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _invalid(field_name: str, code: str, message: str) -> InvalidInput:
    return InvalidInput(code, message, field=field_name)


def _kind(value: str) -> ChannelKind:
    try:
        return ChannelKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in ChannelKind)
        raise _invalid("kind", "invalid_kind", f"kind must be one of {kinds}") from None


def _url(value: str) -> str:
    parts = urlsplit(value)
    if len(value) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("url", "invalid_url", "url must be an http:// or https:// address")
    return value


def _events(values: Sequence[str]) -> tuple[str, ...]:
    if not values:
        raise _invalid("events", "invalid_events", "events must name at least one event")
    for name in values:
        if name not in KNOWN_EVENTS:
            raise _invalid("events", "unknown_event", f"unknown event {name!r}")
    return tuple(dict.fromkeys(values))


def _sms_settings(settings: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The SMS provider's settings, checked; only Alibaba Cloud is implemented."""
    provider = settings.get("provider")
    if provider != SmsProvider.ALIYUN:
        raise _invalid(
            "settings.provider",
            "unsupported_provider",
            f'SMS provider {provider!r} is not supported; use "aliyun" (Alibaba Cloud SMS)',
        )
    if not secret:
        raise _invalid("secret", "missing_secret", "an SMS channel needs its AccessKey secret")
    out: dict[str, Any] = {"provider": provider}
    for name in ("access_key_id", "sign_name", "template_code"):
        value = settings.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise _invalid(f"settings.{name}", "invalid_settings", f"settings.{name} is required")
        out[name] = value.strip()
    region = settings.get("region_id")
    if region is not None:
        if not isinstance(region, str) or not re.fullmatch(r"[a-z0-9-]{2,40}", region):
            raise _invalid("settings.region_id", "invalid_settings", "bad settings.region_id")
        out["region_id"] = region
    phones = settings.get("phone_numbers")
    if (
        not isinstance(phones, list)
        or not phones
        or len(phones) > MAX_PHONE_NUMBERS
        or not all(isinstance(p, str) and PHONE.match(p) for p in phones)
    ):
        raise _invalid(
            "settings.phone_numbers",
            "invalid_settings",
            f"settings.phone_numbers must list 1 to {MAX_PHONE_NUMBERS} phone numbers",
        )
    out["phone_numbers"] = list(dict.fromkeys(phones))
    unknown = set(settings) - {"provider", "access_key_id", "sign_name", "template_code",
                               "region_id", "phone_numbers"}  # fmt: skip
    if unknown:
        raise _invalid("settings", "invalid_settings", f"unknown settings {sorted(unknown)}")
    return out


@dataclass(frozen=True, slots=True)
class CreateChannel(Command[PlacedChannel]):
    """A county administrator or administrator adds a channel to an org unit within their
    jurisdiction."""

    actor: Principal
    org_unit: str
    kind: str
    url: str
    events: tuple[str, ...]
    secret: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


async def create_channel(command: CreateChannel, uow: UnitOfWork, *, clock: Clock) -> PlacedChannel:
    kind = _kind(command.kind)
    url = _url(command.url)
    events = _events(command.events)
    secret = command.secret or None
    if secret is not None and len(secret) > MAX_SECRET:
        raise _invalid("secret", "invalid_secret", f"secret is longer than {MAX_SECRET}")
    if kind is ChannelKind.SMS:
        settings = _sms_settings(command.settings, secret)
    elif command.settings:
        raise _invalid("settings", "invalid_settings", "settings are for SMS channels only")
    else:
        settings = {}
    async with uow:
        unit = await visible_unit(uow, command.actor, command.org_unit)
        channel = await uow.notifications.add_channel(
            org_unit_id=unit.id,
            kind=kind,
            url=url,
            secret=secret,
            settings=settings,
            events=events,
            created_by=command.actor.officer_id,
            at=clock.now(),
        )
        uow.audit(
            officer_id=command.actor.officer_id,
            action="notification_channel.create",
            request_id=command.request_id,
            detail={
                "channel_id": channel.id,
                "org_unit": unit.code,
                "kind": kind.value,
                "url": shown_url(url),
                "events": list(events),
                "secret_set": secret is not None,
            },
        )
    return PlacedChannel(channel, unit.code)


@dataclass(frozen=True, slots=True)
class ListChannels(Command[list[PlacedChannel]]):
    """The channels of the caller's jurisdiction (of one unit with ``org_unit``)."""

    actor: Principal
    org_unit: str | None = None
    include_inactive: bool = False


async def list_channels(command: ListChannels, uow: UnitOfWork) -> list[PlacedChannel]:
    async with uow:
        scope = command.actor.scope
        if command.org_unit is not None:
            scope = frozenset({(await visible_unit(uow, command.actor, command.org_unit)).id})
        channels = await uow.notifications.list_channels(
            scope, include_inactive=command.include_inactive
        )
        codes = await uow.org_units.codes_by_id({c.org_unit_id for c in channels})
    return [PlacedChannel(c, codes[c.org_unit_id]) for c in channels]


async def _visible_channel(uow: UnitOfWork, who: Principal, channel_id: int) -> Channel:
    try:
        channel = await uow.notifications.get_channel(channel_id)
    except stored.NotFound as exc:
        raise NotFound(f"notification channel {channel_id}") from exc
    if not who.sees(channel.org_unit_id):
        raise NotFound(f"notification channel {channel_id}")
    return channel


@dataclass(frozen=True, slots=True)
class DeactivateChannel(Command[PlacedChannel]):
    """Stop a channel: it gets no new deliveries and its pending ones are not sent."""

    actor: Principal
    channel_id: int
    reason: str | None = None
    request_id: str | None = None


async def deactivate_channel(command: DeactivateChannel, uow: UnitOfWork) -> PlacedChannel:
    async with uow:
        channel = await _visible_channel(uow, command.actor, command.channel_id)
        if await uow.notifications.deactivate(channel.id):
            uow.audit(
                officer_id=command.actor.officer_id,
                action="notification_channel.deactivate",
                request_id=command.request_id,
                detail={
                    "channel_id": channel.id,
                    "kind": channel.kind.value,
                    "reason": command.reason,
                },
            )
        channel = await uow.notifications.get_channel(channel.id)
        codes = await uow.org_units.codes_by_id([channel.org_unit_id])
    return PlacedChannel(channel, codes[channel.org_unit_id])


@dataclass(frozen=True, slots=True)
class ListDeliveries(Command[list[DeliveryRecord]]):
    """A channel's deliveries, newest first (``status`` ``failed`` shows what gave up)."""

    actor: Principal
    channel_id: int
    status: str | None = None
    limit: int = 500


async def list_deliveries(command: ListDeliveries, uow: UnitOfWork) -> list[DeliveryRecord]:
    if command.status is not None and command.status not in {s.value for s in DeliveryStatus}:
        statuses = ", ".join(s.value for s in DeliveryStatus)
        raise _invalid("status", "invalid_status", f"status must be one of {statuses}")
    async with uow:
        channel = await _visible_channel(uow, command.actor, command.channel_id)
        return await uow.notifications.deliveries(channel.id, command.status, command.limit)


# -- the consumer ----------------------------------------------------------------------------

CONSUMER_NAME = "notifications"
LEAVE_DECISIONS = frozenset({EventName.LEAVE_APPROVED.value, EventName.LEAVE_REJECTED.value})


def notifications_consumer(clock: Clock) -> Consumer:
    """The event log's consumer that writes deliveries (every event: any may be subscribed)
    and tells subjects of their leave decisions."""

    async def tell_subject(event: StoredEvent, uow: UnitOfWork) -> None:
        if event.org_unit_id is None or event.subject_id is None:
            return
        unit = await uow.org_units.get(event.org_unit_id)
        text = leave_decision_text(
            event.name == EventName.LEAVE_APPROVED, event.data, unit.timezone
        )
        await uow.messages.add(
            [
                NewMessage(
                    event.subject_id,
                    MessageKind.LEAVE,
                    text,
                    data={"leave_id": event.data.get("leave_id"), "event": event.name},
                    dedupe_key=f"leave-decision:{event.id}",
                )
            ],
            clock.now(),
        )

    async def handle(event: StoredEvent, uow: UnitOfWork) -> None:
        await handle_batch([event], uow)

    async def handle_batch(events: Sequence[StoredEvent], uow: UnitOfWork) -> None:
        placed = [(e.id, e.name, e.org_unit_id) for e in events if e.org_unit_id is not None]
        await uow.notifications.fan_out_many(placed, clock.now())
        for event in events:
            if event.name in LEAVE_DECISIONS:
                await tell_subject(event, uow)

    return Consumer(CONSUMER_NAME, handle, handle_batch=handle_batch)


# -- the sender ------------------------------------------------------------------------------


class Transport(Protocol):
    """Sends one request and answers what came back (never raises for the receiver's
    failures: an answer with status 0 says why none came)."""

    async def send(self, request: OutgoingRequest) -> Answer: ...


@dataclass(frozen=True, slots=True)
class _Send:
    claim: Claimed
    channel: Channel | None
    notices: list[Notice]
    carrier: bool


class NotificationSender:
    """Delivers due notifications; any number of processes may run one side by side."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        transport: Transport,
        policy: NotificationPolicy,
        clock: Clock,
        *,
        batch: int = 500,
        lease_s: float = 60.0,
        robot_backlog: int = 10_000,
    ) -> None:
        self._uow = uow
        self._transport = transport
        self._policy = policy
        self._clock = clock
        self._batch = batch
        # Longer than a send can take (the transport's timeout), so a lease outlives it.
        self._lease = timedelta(seconds=lease_s)
        self._robot_backlog = robot_backlog

    async def run_once(self) -> int:
        """Claim, send and record one round; returns how many deliveries were sent."""
        now = self._clock.now()
        lease_until = now + self._lease
        async with self._uow() as uow:
            claims = await uow.notifications.claim_due(now, lease_until, self._batch)
            robots = await uow.notifications.robot_channels_due(now, 100)
        for channel_id in robots:
            claims += await self._claim_robot(channel_id, now, lease_until)
        if not claims:
            return 0
        sends = await self._load(claims)
        errors = await asyncio.gather(*(self._send(s) for s in sends))
        await self._record(sends, errors)
        return len(sends)

    async def drain(self, *, budget_s: float = 30.0) -> int:
        """Rounds until nothing is due (or ``budget_s`` of wall time passed, so a job tick
        ends); returns how many deliveries were sent."""
        total, started = 0, time.monotonic()
        while time.monotonic() - started < budget_s:
            sent = await self.run_once()
            total += sent
            if sent == 0:
                break
        return total

    async def _claim_robot(
        self, channel_id: int, now: datetime, lease_until: datetime
    ) -> list[Claimed]:
        """Fit a robot's due deliveries into its rolling minute, under the channel's lock."""
        async with self._uow() as uow:
            minute = await uow.notifications.lock_robot(channel_id, now)
            if minute is None:
                return []  # another sender is on this robot
            due = await uow.notifications.robot_due(channel_id, now, self._robot_backlog)
            plan = plan_robot_round(due, self._policy.robot_per_minute - minute.sent)
            if plan.folded:
                await uow.notifications.fold(plan.folded)
            claims = await uow.notifications.claim_ids(
                [*plan.single, *plan.folded[:1]], lease_until
            )
            await uow.notifications.record_robot_sends(channel_id, now, len(claims))
            if plan.waiting:
                # The earliest moment the minute has room again.
                await uow.notifications.postpone(
                    plan.waiting, (minute.oldest or now) + timedelta(minutes=1)
                )
        return claims

    async def _load(self, claims: Sequence[Claimed]) -> list[_Send]:
        async with self._uow() as uow:
            channels = await uow.notifications.channels({c.channel_id for c in claims})
            robot_ids = [c.id for c in claims if channels[c.channel_id].kind in ROBOT_KINDS]
            members = await uow.notifications.digest_members(robot_ids)
            event_ids = {c.event_id for c in claims}
            for events in members.values():
                event_ids.update(events)
            notices = await uow.notifications.notices(event_ids)
        sends = []
        for claim in claims:
            events = members.get(claim.id, [claim.event_id])
            found = [notices[e] for e in events if e in notices]
            sends.append(_Send(claim, channels.get(claim.channel_id), found, claim.id in members))
        return sends

    async def _send(self, send: _Send) -> str | None:
        """None when delivered, else why not."""
        if send.channel is None or not send.notices:
            return "the channel or its event is gone"
        try:
            request = build_request(
                send.channel, send.notices, Rendering(self._clock.now(), uuid.uuid4().hex)
            )
        except (KeyError, TypeError, ValueError) as exc:
            return f"cannot render: {exc!r}"[:300]
        return judge(request.acceptance, await self._transport.send(request))

    async def _record(self, sends: Sequence[_Send], errors: Sequence[str | None]) -> None:
        now = self._clock.now()
        delivered: list[tuple[int, int]] = []
        carriers: list[int] = []
        failures: list[Failure] = []
        policy = self._policy
        for send, error in zip(sends, errors, strict=True):
            claim = send.claim
            if error is None:
                delivered.append((claim.id, claim.attempts))
                if send.carrier:
                    carriers.append(claim.id)
                continue
            give_up = claim.attempts >= policy.max_attempts
            delay = retry_delay_s(claim.attempts, policy.retry_base_s, policy.retry_max_s)
            failures.append(
                Failure(claim.id, claim.attempts, now + timedelta(seconds=delay), error, give_up)
            )
            log.warning(
                "notification not delivered",
                delivery_id=claim.id,
                channel_id=claim.channel_id,
                attempts=claim.attempts,
                error=error,
                gave_up=give_up,
            )
        async with self._uow() as uow:
            await uow.notifications.record_delivered(delivered, now, carriers)
            await uow.notifications.record_failures(failures)
