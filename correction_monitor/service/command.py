"""Commands: what a caller asks the service layer to do, as frozen dataclasses.

A command type names its result type (``CreateSubject(Command[Subject])``), so
``Services.handle(command)`` is typed by what it returns. Each command has exactly one
handler, a plain ``async def handler(command, uow, **dependencies)`` in the feature's module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from correction_monitor.service.unit_of_work import UnitOfWork

R = TypeVar("R", covariant=True)


class Command(Generic[R]):
    """Base of every command; ``R`` is what its handler returns."""

    __slots__ = ()


Handler = Callable[[Any, "UnitOfWork"], Awaitable[Any]]
"""A handler with its dependencies bound: takes the command and a fresh unit of work."""
