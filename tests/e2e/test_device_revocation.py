"""A revoked device is refused at once by the process that revoked it and within the
revocation watch's period by every other one, although known devices are cached for
minutes (a phone reports every 15–60 s: a shorter cache would save nothing)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from correction_monitor.service.device_identity import DeviceDirectory
from correction_monitor.web.keys import DEVICES, POOL
from tests.conftest import Officers, bearer
from tests.e2e.helpers import INSIDE, World, make_world, post_fixes, recent

pytestmark = pytest.mark.e2e


def fix(seq: int) -> dict[str, Any]:
    return {"id": f"r{seq}", "ts": recent(30 - seq).isoformat(), "lon": INSIDE[0], "lat": INSIDE[1]}


async def test_revoked_through_the_api_is_refused_at_once(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world: World = await make_world(client, officers)
    status, _ = await post_fixes(client, world.device_token, [fix(1)])
    assert status == 200  # now cached in this process
    resp = await client.delete(
        f"/api/v1/subjects/{world.subject_id}/devices/{world.device_id}",
        headers=bearer(world.admin_token),
    )
    assert resp.status == 204
    status, body = await post_fixes(client, world.device_token, [fix(2)])
    assert status == 401, body


async def test_another_process_forgets_a_revoked_device_at_its_next_watch(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers)
    # A second directory stands for another worker process with its own cache.
    other = DeviceDirectory(client.app[POOL], watch_every_s=0.1)
    await other.check_revocations()
    known = await other.by_token(world.device_token)
    assert known is not None
    assert known.device_id == world.device_id
    resp = await client.delete(
        f"/api/v1/subjects/{world.subject_id}/devices/{world.device_id}",
        headers=bearer(world.admin_token),
    )
    assert resp.status == 204
    # Until it looks, the other process still holds the identity (no query per request)...
    assert await other.by_token(world.device_token) == known
    await other.check_revocations()
    # ...and after one look it is gone, while the revoking process refused it already.
    assert await other.by_token(world.device_token) is None
    assert await client.app[DEVICES].by_token(world.device_token) is None


async def test_known_devices_are_served_from_the_cache_while_the_watch_runs(
    client: TestClient[Any, Any], officers: Officers
) -> None:
    world = await make_world(client, officers)
    directory = DeviceDirectory(client.app[POOL], ttl_s=300.0, fallback_ttl_s=0.0)
    await directory.check_revocations()
    assert await directory.by_token(world.device_token) is not None
    # Revoked behind the directory's back, with no watch looking: only the long-lived cache
    # can still answer, which shows that it answers without PostgreSQL.
    async with client.app[POOL].acquire() as conn:
        await conn.execute("UPDATE devices SET revoked_at = now() WHERE id = $1", world.device_id)
    assert await directory.by_token(world.device_token) is not None
    # A watch that has gone quiet shortens the lifetime to the fallback (here 0 s).
    directory._watched_at = -1e9
    assert await directory.by_token(world.device_token) is None


class _BrokenPool:
    """A pool whose every acquire fails in a way no database error class covers."""

    def acquire(self) -> Any:
        raise RuntimeError("pool is closing")


async def test_the_watch_survives_any_failure_and_entries_stay_short() -> None:
    directory = DeviceDirectory(_BrokenPool(), watch_every_s=0.01)
    watch = asyncio.create_task(directory.watch())
    try:
        await asyncio.sleep(0.1)
        assert not watch.done()  # it failed several times and carries on
        assert directory._watched_at is None  # so cached devices live only the fallback
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
