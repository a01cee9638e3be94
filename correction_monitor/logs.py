"""Structured logging, configured once per process."""

from __future__ import annotations

import logging
import sys

import structlog

from correction_monitor.settings import LogFormat


def configure_logging(log_format: LogFormat, level: str = "INFO") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if log_format is LogFormat.JSON
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper(), force=True)
    # aiohttp logs every request at INFO; our metrics middleware already counts them.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # apscheduler logs every job run at INFO (every few seconds); keep its warnings only.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # alembic announces each of its plugins at INFO; the migrations it runs stay visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
