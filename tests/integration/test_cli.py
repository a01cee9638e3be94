"""The command line as CONTRACT.md fixes it, run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import unique

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("correction-monitor")


def run(database_url: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CM_DATABASE_URL": database_url, "CM_REDIS_URL": redis_url}
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def create_officer(
    database_url: str, redis_url: str, username: str, org: str, *extra: str, role: str = "admin"
) -> subprocess.CompletedProcess[str]:
    return run(
        database_url,
        redis_url,
        "admin",
        "create-officer",
        "--username",
        username,
        "--password",
        "s3cret-pass",
        "--role",
        role,
        "--org-unit",
        org,
        *extra,
    )


def test_migrate_is_idempotent(database_url: str, redis_url: str) -> None:
    for _ in range(2):
        done = run(database_url, redis_url, "migrate")
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout


async def test_create_officer_then_log_in(
    database_url: str, redis_url: str, client: TestClient[Any, Any]
) -> None:
    username, org = unique("root"), unique("bureau")
    done = create_officer(database_url, redis_url, username, org, "--org-name", "XX县司法局")
    assert done.returncode == 0, done.stderr
    resp = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": "s3cret-pass"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["token_type"] == "bearer"
    resp = await client.get(
        "/api/v1/org-units", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    names = {u["code"]: u["name"] for u in (await resp.json())["org_units"]}
    assert names[org] == "XX县司法局"

    again = create_officer(database_url, redis_url, username, org)
    assert again.returncode == 2
    assert "exists" in again.stderr


def test_create_officer_rejects_unknown_role(database_url: str, redis_url: str) -> None:
    done = create_officer(database_url, redis_url, unique("u"), unique("o"), role="warden")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
