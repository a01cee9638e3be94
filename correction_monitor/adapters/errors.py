"""Errors raised by the storage adapters."""

from __future__ import annotations


class NotFound(LookupError):
    """The record asked for does not exist (or is outside the caller's view)."""


class AlreadyExists(Exception):
    """A record with the same unique key exists already."""
