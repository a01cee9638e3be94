"""Defining fences and importing boundaries through the handlers, on the in-memory unit of
work."""

from __future__ import annotations

from typing import Any

import pytest
import shapely

from correction_monitor.domain.access import Role
from correction_monitor.domain.events import EventName
from correction_monitor.service.boundaries import ImportBoundaries, ListBoundaries
from correction_monitor.service.errors import Forbidden, InvalidInput, NotFound
from correction_monitor.service.fences import CreateFence, GetFence, ListFences
from geofences.crs import CRS
from tests.fakes import FakeUnitOfWork, fake_services

pytestmark = pytest.mark.unit


def square(lon: float, lat: float, size: float = 0.1) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


BOW_TIE = {
    "type": "Polygon",
    "coordinates": [[[116.0, 39.0], [116.1, 39.1], [116.1, 39.0], [116.0, 39.1], [116.0, 39.0]]],
}


def datav(*features: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"adcode": adcode, "name": f"区 {adcode}", "level": "district"},
                "geometry": geometry,
            }
            for adcode, geometry in features
        ],
    }


async def test_a_circle_is_stored_audited_and_announced() -> None:
    uow = FakeUnitOfWork()
    county = uow.state.add_unit("county")
    admin = uow.state.add_officer(Role.COUNTY_ADMIN, county)
    services = fake_services(uow)
    placed = await services.handle(
        CreateFence(
            actor=admin,
            name="学校",
            kind="exclusion",
            org_unit="county",
            geometry={"type": "Point", "coordinates": [116.3, 39.9]},
            radius_m=300.0,
            request_id="r",
        )
    )
    fence = placed.fence
    assert (fence.center_lon, fence.center_lat, fence.radius_m) == (116.3, 39.9, 300.0)
    assert (fence.geometry_id, placed.org_code, fence.source_crs) == (None, "county", "wgs84")
    assert uow.state.fences == {fence.id: fence}
    [entry] = uow.audits
    assert (entry.action, entry.officer_id, entry.detail["fence_id"]) == (
        "fence.create",
        admin.officer_id,
        fence.id,
    )
    [event] = uow.emitted
    assert (event.name, event.org_unit_id, event.data) == (
        EventName.FENCE_CREATED,
        county.id,
        {"fence_id": fence.id, "kind": "exclusion", "name": "学校"},
    )


async def test_a_bad_polygon_names_its_problem_and_stores_nothing() -> None:
    uow = FakeUnitOfWork()
    county = uow.state.add_unit("county")
    admin = uow.state.add_officer(Role.ADMIN, county)
    services = fake_services(uow)
    command = CreateFence(
        actor=admin,
        name="x",
        kind="activity_area",
        org_unit="county",
        geometry=BOW_TIE,
        repair=False,
    )
    with pytest.raises(InvalidInput) as refused:
        await services.handle(command)
    assert refused.value.code == "invalid_geometry"
    assert refused.value.extra == {"problem": "self_intersection"}
    assert (uow.state.fences, uow.state.geometries, uow.emitted, uow.audits) == ({}, {}, [], [])
    assert uow.rollbacks == 1
    # Asked to, the same ring is rebuilt and the repair reported.
    repaired = await services.handle(
        CreateFence(
            actor=admin, name="x", kind="activity_area", org_unit="county", geometry=BOW_TIE
        )
    )
    assert repaired.repairs
    assert repaired.fence.geometry_id in uow.state.geometries


async def test_a_fence_of_imported_districts_is_their_union() -> None:
    uow = FakeUnitOfWork()
    county = uow.state.add_unit("county")
    admin = uow.state.add_officer(Role.ADMIN, county)
    services = fake_services(uow)
    areas = await services.handle(
        ImportBoundaries(
            actor=admin,
            collection=datav(("990101", square(116.0, 39.0)), ("990102", square(116.1, 39.0))),
            crs=CRS.WGS84,
        )
    )
    assert [a.adcode for a in areas] == ["990101", "990102"]
    listed = await services.handle(ListBoundaries(actor=admin))
    assert {a.adcode for a in listed} == {"990101", "990102"}
    assert [e.action for e in uow.audits] == ["boundaries.import"]
    placed = await services.handle(
        CreateFence(
            actor=admin,
            name="两区",
            kind="activity_area",
            org_unit="county",
            adcodes=("990101", "990102"),
        )
    )
    assert placed.fence.adcodes == ("990101", "990102")
    assert placed.fence.geometry_id is not None
    union = uow.state.geometries[placed.fence.geometry_id]
    assert union.area == pytest.approx(shapely.box(116.0, 39.0, 116.2, 39.1).area)
    with pytest.raises(InvalidInput) as refused:
        await services.handle(
            CreateFence(
                actor=admin, name="x", kind="activity_area", org_unit="county", adcodes=("980000",)
            )
        )
    assert refused.value.code == "unknown_adcode"


@pytest.mark.parametrize(
    ("collection", "code"),
    [
        ({"type": "Feature"}, "invalid_geojson"),
        ([], "invalid_geojson"),
        ({"type": "FeatureCollection", "features": []}, "invalid_geojson"),
        (datav(("990103", BOW_TIE)), "invalid_geometry"),
    ],
)
async def test_unusable_boundary_files_are_refused(collection: Any, code: str) -> None:
    uow = FakeUnitOfWork()
    admin = uow.state.add_officer(Role.ADMIN, uow.state.add_unit("hq"))
    command = ImportBoundaries(actor=admin, collection=collection, crs=CRS.WGS84, repair=False)
    with pytest.raises(InvalidInput) as refused:
        await fake_services(uow).handle(command)
    assert refused.value.code == code
    assert uow.state.admin_areas == {}
    if code == "invalid_geometry":
        assert refused.value.extra["problem"] == "self_intersection"
        assert refused.value.extra["feature"] == "990103 区 990103"


async def test_a_countys_fences_serve_its_stations_and_no_one_else() -> None:
    uow = FakeUnitOfWork()
    county, elsewhere = uow.state.add_unit("county"), uow.state.add_unit("elsewhere")
    station = uow.state.add_unit("station", county)
    admin = uow.state.add_officer(Role.COUNTY_ADMIN, county)
    officer = uow.state.add_officer(Role.OFFICER, station)
    stranger = uow.state.add_officer(Role.COUNTY_ADMIN, elsewhere)
    services = fake_services(uow)
    placed = await services.handle(
        CreateFence(
            actor=admin,
            name="县域",
            kind="activity_area",
            org_unit="county",
            geometry=square(116, 39),
        )
    )
    got = await services.handle(GetFence(actor=officer, fence_id=placed.fence.id))
    assert got.geometry is not None
    assert got.geometry.equals(shapely.box(116, 39, 116.1, 39.1))
    assert [p.fence.id for p in await services.handle(ListFences(actor=officer))] == [
        placed.fence.id
    ]
    with pytest.raises(NotFound):
        await services.handle(GetFence(actor=stranger, fence_id=placed.fence.id))
    assert await services.handle(ListFences(actor=stranger)) == []
    # Another county's administrator may not define fences for this county either.
    with pytest.raises(Forbidden):
        await services.handle(
            CreateFence(actor=stranger, name="x", kind="exclusion", org_unit="county", radius_m=1)
        )
