"""The answers' prepared fence areas: each fence's shape is read once per process, and a
fence created later is still found."""

from __future__ import annotations

from typing import Any, cast

import pytest

from correction_monitor.domain.models import GeofenceRecord
from correction_monitor.service.checkins import AreaCache
from correction_monitor.service.unit_of_work import UnitOfWork

pytestmark = pytest.mark.unit


def _circle(fence_id: int, lon: float) -> GeofenceRecord:
    return GeofenceRecord(
        id=fence_id,
        name=f"fence {fence_id}",
        kind="activity_area",
        org_unit_id=1,
        geometry_id=None,
        center_lon=lon,
        center_lat=28.0,
        radius_m=500.0,
        adcodes=None,
        source_crs="wgs84",
        schedule=None,
    )


class Geo:
    """The fences a unit of work would read, and how often they were read."""

    def __init__(self) -> None:
        self.fences: dict[int, GeofenceRecord] = {}
        self.reads = 0

    async def get_fences(self, ids: list[int]) -> list[GeofenceRecord]:
        self.reads += 1
        return [self.fences[i] for i in ids if i in self.fences]

    async def load_geometry(self, geometry_id: int) -> Any:
        raise AssertionError("circles have no geometry row")


class Work:
    def __init__(self, geo: Geo) -> None:
        self.geo = geo


def _uow(geo: Geo) -> UnitOfWork:
    return cast(UnitOfWork, Work(geo))


async def test_a_fence_is_read_once() -> None:
    geo = Geo()
    geo.fences[1] = _circle(1, 112.9)
    areas = AreaCache()
    first = await areas.of_fence(_uow(geo), 1)
    again = await areas.of_fence(_uow(geo), 1)
    assert first is not None
    assert again is first
    assert geo.reads == 1


async def test_a_fence_created_later_is_found() -> None:
    geo = Geo()
    areas = AreaCache()
    assert await areas.of_fence(_uow(geo), 2) is None
    geo.fences[2] = _circle(2, 113.0)
    found = await areas.of_fence(_uow(geo), 2)
    assert found is not None
    assert geo.reads == 2


async def test_fences_of_the_same_shape_share_one_prepared_area() -> None:
    geo = Geo()
    geo.fences[3] = _circle(3, 112.95)
    geo.fences[4] = _circle(4, 112.95)
    geo.fences[5] = _circle(5, 113.05)
    areas = AreaCache()
    three, four, five = [await areas.of_fence(_uow(geo), i) for i in (3, 4, 5)]
    assert three is four
    assert five is not three


async def test_the_least_recently_used_are_dropped() -> None:
    geo = Geo()
    for i in range(1, 5):
        geo.fences[i] = _circle(i, 112.8 + i / 100)
    areas = AreaCache(size=2)
    for i in (1, 2, 3):
        await areas.of_fence(_uow(geo), i)
    assert geo.reads == 3
    await areas.of_fence(_uow(geo), 3)
    assert geo.reads == 3
    await areas.of_fence(_uow(geo), 1)  # dropped: read again
    assert geo.reads == 4
