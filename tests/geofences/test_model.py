"""Tests for geofences.model: fence, circle and membership invariants."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import shapely

from geofences.model import Circle, Fence, FenceKind, Membership
from geofences.schedule import Schedule, Window

pytestmark = pytest.mark.unit

COUNTY = shapely.box(116.0, 39.8, 116.4, 40.2)


def test_membership_codes_are_fixed() -> None:
    assert (Membership.UNCERTAIN, Membership.INSIDE, Membership.OUTSIDE) == (0, 1, 2)


def test_fence_kind_values() -> None:
    assert [k.value for k in FenceKind] == [
        "activity_area",
        "exclusion",
        "home",
        "leave_destination",
    ]


@pytest.mark.parametrize(
    ("lon", "lat", "radius"),
    [
        (181.0, 39.0, 10.0),
        (116.0, 90.0, 10.0),
        (math.nan, 39.0, 10.0),
        (116.0, 39.0, 0.0),
        (116.0, 39.0, -5.0),
        (116.0, 39.0, math.inf),
    ],
)
def test_circle_rejects_bad_values(lon: float, lat: float, radius: float) -> None:
    with pytest.raises(ValueError, match="circle"):
        Circle(lon, lat, radius)


def test_fence_needs_exactly_one_shape() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Fence(1, FenceKind.HOME)
    with pytest.raises(ValueError, match="exactly one"):
        Fence(1, FenceKind.HOME, geometry=COUNTY, circle=Circle(116.0, 40.0, 100.0))


def test_fence_rejects_non_polygons_and_bad_fields() -> None:
    with pytest.raises(ValueError, match="Polygon or MultiPolygon"):
        Fence(1, FenceKind.EXCLUSION, geometry=shapely.Point(116.0, 40.0))
    with pytest.raises(ValueError, match="empty"):
        Fence(1, FenceKind.EXCLUSION, geometry=shapely.Polygon())
    with pytest.raises(ValueError, match="kind"):
        Fence(1, "exclusion", geometry=COUNTY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id"):
        Fence(True, FenceKind.EXCLUSION, geometry=COUNTY)
    with pytest.raises(ValueError, match="schedule"):
        Fence(1, FenceKind.EXCLUSION, geometry=COUNTY, schedule="22:00-06:00")  # type: ignore[arg-type]


def test_fences_share_the_geometry_object() -> None:
    fences = [Fence(i, FenceKind.ACTIVITY_AREA, geometry=COUNTY) for i in range(100)]
    assert all(f.geometry is COUNTY for f in fences)
    assert fences[0].shape is COUNTY


def test_equality_is_by_geometry_identity_not_vertices() -> None:
    twin = shapely.box(116.0, 39.8, 116.4, 40.2)
    a = Fence(1, FenceKind.ACTIVITY_AREA, geometry=COUNTY)
    assert a == Fence(1, FenceKind.ACTIVITY_AREA, geometry=COUNTY)
    assert hash(a) == hash(Fence(1, FenceKind.ACTIVITY_AREA, geometry=COUNTY))
    assert a != Fence(1, FenceKind.ACTIVITY_AREA, geometry=twin)
    assert a != Fence(2, FenceKind.ACTIVITY_AREA, geometry=COUNTY)


def test_circle_fence_with_schedule() -> None:
    night = Schedule((Window(frozenset(range(1, 8)), dt.time(22), dt.time(6)),))
    home = Fence("home-7", FenceKind.HOME, circle=Circle(116.39, 39.91, 150.0), schedule=night)
    assert home.shape == Circle(116.39, 39.91, 150.0)
    assert home == Fence(
        "home-7", FenceKind.HOME, circle=Circle(116.39, 39.91, 150.0), schedule=night
    )
    assert (
        len(
            {
                home,
                Fence(
                    "home-7", FenceKind.HOME, circle=Circle(116.39, 39.91, 150.0), schedule=night
                ),
            }
        )
        == 1
    )
