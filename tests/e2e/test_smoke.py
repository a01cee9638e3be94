"""The app answers health checks and issues tokens against real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Officers, bearer, unique

pytestmark = pytest.mark.e2e


async def test_health_and_readiness(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert "cm_http_requests_total" in await resp.text()


async def test_admin_logs_in_and_creates_org_unit(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    county = unique("c")
    _, token = await officers.create("admin", county)
    station = unique("s")
    resp = await client.post(
        "/api/v1/org-units",
        json={"code": station, "name": "城关司法所", "parent_code": county},
        headers=bearer(token),
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["code"] == station
    assert body["parent_code"] == county
    assert body["timezone"] == "Asia/Shanghai"
