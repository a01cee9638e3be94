"""The track both fault tests replay: two excursions that alert and one too short to.

Shared by the server-restart, Redis and PostgreSQL outage tests, so each compares its
subjects' alerts against the same in-order expectation.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from correction_monitor.policy import load_policy
from tests.conftest import bearer
from tests.e2e.helpers import World

# Near the east edge (116.4°E) of the helpers' county square: 0.005° of longitude is about
# 430 m either side, and one 30 s step between them is 28 m/s, a plausible car, so the
# speed filter never mistakes a crossing for a jump-and-return spike.
IN = (116.395, 39.90)
OUT = (116.405, 39.90)
STEP_S = 30.0
BATCH = 20
# Two long excursions (alerts) and one of 60 s, shorter than the strict level's 120 s
# confirmation time (no alert): 240 fixes, 12 batches.
PATTERN = [(IN, 30), (OUT, 20), (IN, 40), (OUT, 3), (IN, 40), (OUT, 30), (IN, 77)]
CONFIRM_S = load_policy(None).level("strict").confirm_s


def pattern_points() -> list[tuple[float, float]]:
    return [point for point, count in PATTERN for _ in range(count)]


def expected_episodes(fixes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(type, started_at, ended_at) of the excursions in ``PATTERN`` that outlast the
    confirmation time: from the first fix outside to the first fix back inside."""
    episodes = []
    index = 0
    for point, count in PATTERN:
        if point == OUT and (count - 1) * STEP_S >= CONFIRM_S:
            episodes.append(
                ("left_activity_area", _z(fixes[index]["ts"]), _z(fixes[index + count]["ts"]))
            )
        index += count
    return episodes


def _z(iso_ts: str) -> str:
    return iso_ts.replace("+00:00", "Z")


def batches_of(fixes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [fixes[i : i + BATCH] for i in range(0, len(fixes), BATCH)]


async def alert_summary(
    http: aiohttp.ClientSession | TestClient[Any, Any], world: World
) -> list[tuple[str, str, str | None]]:
    """The subject's alerts through the API, as (type, started_at, ended_at), oldest first."""
    resp = await http.get(
        "/api/v1/alerts",
        params={"subject_id": str(world.subject_id)},
        headers=bearer(world.admin_token),
    )
    assert resp.status == 200, await resp.text()
    alerts = (await resp.json())["alerts"]
    return sorted((a["type"], a["started_at"], a["ended_at"]) for a in alerts)
