"""Messages to the subject's app, and their read receipts.

The subject's app lists its own messages (reminders, challenges, leave decisions, officers'
notices) and marks them read; officers send notices and see what a subject was told and
when it was read. The first read counts: a phone marking a message read again never moves
the receipt officers have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from correction_monitor.domain.access import CASEWORK_ROLES, Principal
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.messages import MessageKind, NewMessage, SubjectMessage
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Forbidden, InvalidInput, NotFound
from correction_monitor.service.jurisdiction import visible_subject
from correction_monitor.service.unit_of_work import UnitOfWork

MAX_TEXT = 2000
"""Characters in one notice: a phone screen's worth, several times over."""
MAX_LIST = 500


@dataclass(frozen=True, slots=True)
class ListOwnMessages(Command[list[SubjectMessage]]):
    """The calling subject's messages after ``since`` (a message id), oldest first."""

    subject_id: int
    since: int = 0
    limit: int = MAX_LIST


async def list_own_messages(command: ListOwnMessages, uow: UnitOfWork) -> list[SubjectMessage]:
    async with uow:
        return await uow.messages.since(
            command.subject_id, command.since, min(command.limit, MAX_LIST)
        )


@dataclass(frozen=True, slots=True)
class MarkMessageRead(Command[SubjectMessage]):
    """The calling subject has read its message ``message_id``."""

    subject_id: int
    message_id: int


async def mark_message_read(
    command: MarkMessageRead, uow: UnitOfWork, *, clock: Clock
) -> SubjectMessage:
    """Record the first read (by the service's clock); NotFound when the message is not
    this subject's, exactly as when it does not exist."""
    async with uow:
        read_at = await uow.messages.mark_read(command.subject_id, command.message_id, clock.now())
        if read_at is None:
            raise NotFound(f"message {command.message_id}")
        found = await uow.messages.since(command.subject_id, command.message_id - 1, 1)
    if not found or found[0].id != command.message_id:
        raise NotFound(f"message {command.message_id}")
    return found[0]


@dataclass(frozen=True, slots=True)
class SendMessage(Command[SubjectMessage]):
    """An officer's notice to a subject of their jurisdiction."""

    actor: Principal
    subject_id: int
    text: str
    request_id: str | None = None


async def send_message(command: SendMessage, uow: UnitOfWork, *, clock: Clock) -> SubjectMessage:
    """Store the notice for the subject's app; audited (``message.send``) and announced
    (``message.sent``)."""
    who = command.actor
    if not who.may(CASEWORK_ROLES):
        raise Forbidden(f"role {who.role.value!r} may not send messages")
    text = command.text.strip()
    if not text:
        raise InvalidInput("invalid_request", "text must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput("invalid_request", f"text must be at most {MAX_TEXT} characters")
    async with uow:
        subject = await visible_subject(uow, who, command.subject_id)
        (message,) = await uow.messages.add(
            [NewMessage(subject.id, MessageKind.NOTICE, text, sent_by=who.officer_id)],
            clock.now(),
        )
        uow.audit(
            officer_id=who.officer_id,
            action="message.send",
            subject_id=subject.id,
            request_id=command.request_id,
            detail={"message_id": message.id, "chars": len(text)},
        )
        uow.emit(
            DomainEvent(
                EventName.MESSAGE_SENT,
                subject.org_unit_id,
                subject.id,
                data={"message_id": message.id, "kind": message.kind},
            )
        )
    return message


@dataclass(frozen=True, slots=True)
class ListSubjectMessages(Command[list[SubjectMessage]]):
    """What a subject of the caller's jurisdiction was sent, with read receipts."""

    actor: Principal
    subject_id: int
    since: int = 0
    limit: int = MAX_LIST


async def list_subject_messages(
    command: ListSubjectMessages, uow: UnitOfWork
) -> list[SubjectMessage]:
    async with uow:
        subject = await visible_subject(uow, command.actor, command.subject_id)
        return await uow.messages.since(subject.id, command.since, min(command.limit, MAX_LIST))
