"""One typed settings object, read from the environment (prefix ``CM_``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogFormat(StrEnum):
    """How log lines are rendered: ``console`` for people, ``json`` for collectors."""

    CONSOLE = "console"
    JSON = "json"


class Settings(BaseSettings):
    """Process configuration.

    ``database_url`` / ``redis_url`` left unset mean: start the embedded PostgreSQL and Redis
    (real servers shipped in Python packages) under ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="CM_", extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path(".cm-data")
    policy_file: Path | None = None
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "INFO"
    # Officer bearer tokens live this long (seconds).
    token_ttl_s: int = Field(default=8 * 3600, gt=0)
    # Group commit: how many fixes may wait for a commit before ingestion answers 503.
    ingest_queue_limit: int = Field(default=50_000, gt=0)
    # Keys in Redis start with this, so several deployments (or test runs) can share one server.
    redis_prefix: str = "cm:"
    db_pool_size: int = Field(default=10, ge=2)
    # The event loop of `serve`: uvloop (libuv) where installed, else asyncio's own.
    event_loop: str = Field(default="uvloop", pattern="^(uvloop|asyncio)$")
    # Background jobs (lost-contact sweep, partition upkeep). Tests switch them off.
    run_scheduler: bool = True
    # The TrueType CJK font evidence PDFs embed; unset: the npm package's (fonts/, npm ci).
    pdf_font: Path | None = None
