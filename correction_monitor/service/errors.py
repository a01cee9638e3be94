"""What a handler answers when a command cannot be carried out.

Each error names the kind of refusal, not a transport: the web layer turns them into its
status codes (``web/dispatch.py``), the CLI into a message and an exit status. ``code`` is the
stable slug clients see; ``extra`` holds further fields of the answer (a geometry problem, the
feature it was found in).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A command refused; ``code`` is its slug, the message is for people."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class InvalidInput(ServiceError):
    """The command is unusable as given (an unknown org unit, a term that ends before it
    starts, a bad geometry)."""


class Unauthenticated(ServiceError):
    """The caller did not prove who they are (wrong password, unknown user)."""


class Forbidden(ServiceError):
    """The caller may not do this here (outside their jurisdiction, above their role)."""

    def __init__(self, message: str) -> None:
        super().__init__("forbidden", message)


class NotFound(ServiceError):
    """The thing named does not exist, or is outside the caller's jurisdiction: the two are
    answered alike so that others' records are never revealed."""

    def __init__(self, what: str) -> None:
        super().__init__("not_found", f"{what} not found")
        self.what = what


class Conflict(ServiceError):
    """The command contradicts the present state (a code taken, an alert already resolved)."""


class TooLarge(ServiceError):
    """The request carries more than the service takes at once (fixes in one upload)."""


class TryAgain(ServiceError):
    """A transient failure the caller should retry (an identifier could not be allocated,
    storage away, the ingest queue full); ``retry_after_s``, when known, is how long to wait."""

    def __init__(
        self, code: str, message: str, *, retry_after_s: int | None = None, **extra: Any
    ) -> None:
        super().__init__(code, message, **extra)
        self.retry_after_s = retry_after_s


class TooManyAttempts(ServiceError):
    """The caller has failed too often lately (ten wrong logins for one username within
    fifteen minutes): refused without looking further until ``retry_after_s`` seconds pass."""

    def __init__(self, code: str, message: str, *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(code, message, **extra)
        self.retry_after_s = retry_after_s
