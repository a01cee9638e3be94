"""Messages to a subject's app (reminders, challenges, officers' notices), with read receipts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from correction_monitor.domain.timeutil import iso


class MessageKind(StrEnum):
    """Why a message was sent; the app may draw each kind its own way."""

    REMINDER = "reminder"  # a check-in window closes soon
    CHALLENGE = "challenge"  # a random or on-demand check-in is open now
    NOTICE = "notice"  # an officer's message
    LEAVE = "leave"  # a leave application was decided
    SELF_RESOLUTION = "self_resolution"  # "you are outside your area: return or call"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message about to be sent. ``dedupe_key`` makes a repeated send (a retried job, a
    second process) land once per subject."""

    subject_id: int
    kind: MessageKind
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    sent_by: int | None = None


@dataclass(frozen=True, slots=True)
class SubjectMessage:
    id: int
    subject_id: int
    kind: str
    text: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
    sent_by: int | None

    def to_json(self) -> dict[str, Any]:
        """The app's message shape (CONTRACT.md), with the message's data for drawing it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "data": self.data,
            "created_at": iso(self.created_at),
            "read_at": iso(self.read_at),
        }
