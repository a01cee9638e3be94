"""The background scheduler really runs the lost-contact sweep (with a province's drill policy)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.settings import Settings
from correction_monitor.web.app import init_app
from tests.conftest import FrontTestServer, Officers
from tests.e2e.helpers import alerts_of, make_world

pytestmark = pytest.mark.e2e


async def test_scheduled_sweep_opens_lost_contact(
    settings: Settings, officers: Officers, tmp_path: Path
) -> None:
    policy = tmp_path / "drill.toml"
    policy.write_text("[levels.strict]\nlost_contact_after_s = 2\n", encoding="utf-8")
    app = init_app(settings.model_copy(update={"run_scheduler": True, "policy_file": policy}))
    async with TestClient(FrontTestServer(app)) as client:
        drill_officers = Officers(officers.database_url, client)
        world = await make_world(client, drill_officers, level="strict")  # enrolled, silent
        found: list[Any] = []
        for _ in range(40):  # the sweep runs every 5 s under this policy
            found = await alerts_of(client, world, type="lost_contact")
            if found:
                break
            await asyncio.sleep(0.5)
        assert [a["type"] for a in found] == ["lost_contact"]
        assert found[0]["evidence"]["policy"]["lost_contact_after_s"] == 2
