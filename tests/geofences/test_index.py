"""Tests for geofences.index: shared areas, subjects, batch evaluation, schedules, memory."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import shapely

from geofences.classify import PreparedArea, classify, metres_per_degree
from geofences.index import FenceIndex
from geofences.model import Circle, Fence, FenceKind, Membership
from geofences.schedule import Schedule, Window

pytestmark = pytest.mark.unit

INSIDE, OUTSIDE, UNCERTAIN = Membership.INSIDE, Membership.OUTSIDE, Membership.UNCERTAIN


def county(i: int) -> shapely.Polygon:
    """A 40-vertex noisy polygon about a grid point in northern China."""
    rng = np.random.default_rng(i)
    lon0, lat0 = 110.0 + (i % 10) * 0.5, 35.0 + (i // 10) * 0.5
    ang = (np.arange(40) + rng.uniform(0, 0.9, 40)) * (2 * np.pi / 40)
    r = 0.2 * rng.uniform(0.7, 1.0, 40)
    return shapely.Polygon(np.column_stack((lon0 + r * np.cos(ang), lat0 + r * np.sin(ang))))


def exclusion(
    fid: int | str, lon: float, lat: float, r: float = 300.0, schedule: Schedule | None = None
) -> Fence:
    return Fence(fid, FenceKind.EXCLUSION, circle=Circle(lon, lat, r), schedule=schedule)


def test_shared_areas_are_held_once() -> None:
    index = FenceIndex()
    geom = county(0)
    h = index.add_shared_area("110108", geom)
    assert index.add_shared_area("110108", geom) == h
    assert index.add_shared_area("alias", geom) == h  # same object under another key
    assert index.area(h).shape is geom
    with pytest.raises(ValueError, match="another geometry"):
        index.add_shared_area("110108", county(1))
    # A polygon exclusion used by many subjects is prepared once, by identity.
    school = shapely.box(110.0, 35.0, 110.001, 35.001)
    for sid in range(10):
        index.set_subject(sid, h, [Fence(sid, FenceKind.EXCLUSION, geometry=school)])
    assert len(index) == 10
    assert sum(1 for i in range(3) if _has_area(index, i, school)) == 1


def _has_area(index: FenceIndex, handle: int, shape: shapely.Polygon) -> bool:
    try:
        return index.area(handle).shape is shape
    except IndexError:
        return False


def test_evaluate_matches_per_area_classify() -> None:
    index = FenceIndex()
    geoms = [county(i) for i in range(30)]
    handles = [index.add_shared_area(i, g) for i, g in enumerate(geoms)]
    rng = np.random.default_rng(1)
    n_subjects = 500
    own: dict[int, list[Fence]] = {}
    for sid in range(n_subjects):
        g = geoms[sid % 30]
        c = g.centroid
        fences = [
            exclusion(
                sid * 10 + k, c.x + rng.uniform(-0.1, 0.1), c.y + rng.uniform(-0.1, 0.1), 2_000.0
            )
            for k in range(3)
        ]
        own[sid] = fences
        index.set_subject(sid * 7 + 3, handles[sid % 30], fences)
    n = 5_000
    subj = rng.integers(0, n_subjects, n)
    lon = np.empty(n)
    lat = np.empty(n)
    for i, s in enumerate(subj):
        c = geoms[s % 30].centroid
        lon[i] = c.x + rng.uniform(-0.3, 0.3)
        lat[i] = c.y + rng.uniform(-0.3, 0.3)
    acc = rng.choice([5.0, 30.0, 200.0, 3_000.0], n)
    activity, exc = index.evaluate(subj * 7 + 3, lon, lat, acc)
    for g_i in range(30):
        rows = np.flatnonzero(subj % 30 == g_i)
        np.testing.assert_array_equal(
            activity[rows], classify(PreparedArea(geoms[g_i]), lon[rows], lat[rows], acc[rows])
        )
    assert len(exc.row) == 3 * n
    np.testing.assert_array_equal(exc.row, np.repeat(np.arange(n), 3))
    for k in range(3):
        rows = exc.row[k::3]
        fences = [own[int(subj[r])][k] for r in rows]
        np.testing.assert_array_equal(exc.fence_id[k::3], [f.id for f in fences])
        expected = [
            int(classify(PreparedArea(f.shape), [lon[r]], [lat[r]], [acc[r]])[0])
            for f, r in zip(fences, rows, strict=True)
        ]
        np.testing.assert_array_equal(exc.membership[k::3], expected)
    assert {0, 1, 2} <= set(np.unique(activity).tolist())
    assert INSIDE in exc.membership


def test_replace_and_remove_subjects() -> None:
    index = FenceIndex()
    a = index.add_shared_area("a", shapely.box(116.0, 39.0, 116.1, 39.1))
    b = index.add_shared_area("b", shapely.box(117.0, 39.0, 117.1, 39.1))
    index.set_subject(1, a, [exclusion(11, 116.05, 39.05)])
    index.set_subject(2, b)
    pts = (np.array([116.05]), np.array([39.05]), np.array([10.0]))
    act, exc = index.evaluate(np.array([1]), *pts)
    assert act.tolist() == [INSIDE]
    assert exc.membership.tolist() == [INSIDE]
    index.set_subject(1, b, [exclusion(12, 117.0, 39.0), exclusion("str-id", 116.05, 39.05)])
    act, exc = index.evaluate(
        np.array([1, 2]), np.array([116.05, 116.05]), np.array([39.05, 39.05]), 10.0
    )
    assert act.tolist() == [OUTSIDE, OUTSIDE]
    assert exc.fence_id.tolist() == [12, "str-id"]
    assert exc.membership.tolist() == [OUTSIDE, INSIDE]
    index.remove_subject(1)
    assert 1 not in index
    assert 2 in index
    with pytest.raises(KeyError, match="unknown subject"):
        index.evaluate(np.array([1]), *pts)
    index.set_subject(3)  # no activity area: always UNCERTAIN, never a breach
    act, exc = index.evaluate(np.array([3]), *pts)
    assert act.tolist() == [UNCERTAIN]
    assert len(exc.row) == 0


def test_scheduled_exclusions_need_time() -> None:
    index = FenceIndex()
    h = index.add_shared_area("a", shapely.box(116.0, 39.0, 116.1, 39.1))
    bar = Schedule((Window(frozenset(range(1, 8)), dt.time(22), dt.time(6)),))
    index.set_subject(
        1, h, [exclusion(1, 116.05, 39.05, schedule=bar), exclusion(2, 116.05, 39.05)]
    )
    lon, lat, acc = np.array([116.05, 116.05]), np.array([39.05, 39.05]), np.array([10.0, 10.0])
    with pytest.raises(ValueError, match="ts is required"):
        index.evaluate(np.array([1, 1]), lon, lat, acc)
    # 23:00 and 12:00 Shanghai time.
    night = dt.datetime(2024, 1, 1, 15, tzinfo=dt.UTC).timestamp()
    noon = dt.datetime(2024, 1, 1, 4, tzinfo=dt.UTC).timestamp()
    _, exc = index.evaluate(np.array([1, 1]), lon, lat, acc, ts=np.array([night, noon]))
    assert exc.row.tolist() == [0, 0, 1]
    assert exc.fence_id.tolist() == [1, 2, 2]


def test_rejects_bad_subjects_and_fences() -> None:
    index = FenceIndex()
    with pytest.raises(ValueError, match="unknown area handle"):
        index.set_subject(1, 5)
    with pytest.raises(ValueError, match="EXCLUSION"):
        index.set_subject(1, None, [Fence(1, FenceKind.HOME, circle=Circle(116, 39, 100))])
    index.set_subject(1)
    with pytest.raises(ValueError, match="one entry per fix"):
        index.evaluate(np.array([1, 1]), np.array([116.0]), np.array([39.0]), np.array([1.0]))


def test_shared_circle_activity_area_and_locate() -> None:
    index = FenceIndex()
    leave = index.add_shared_area("leave-1", Circle(121.47, 31.23, 5_000.0))
    haidian = index.add_shared_area("110108", shapely.box(116.0, 39.9, 116.4, 40.1))
    index.set_subject(9, leave)
    _, north = metres_per_degree(31.23)
    act, _ = index.evaluate(
        np.array([9, 9]),
        np.array([121.47, 121.47]),
        np.array([31.23, 31.23 + 6_000 / north]),
        100.0,
    )
    assert act.tolist() == [INSIDE, OUTSIDE]
    point, handle = index.locate([116.2, 121.47, 116.2], [40.0, 31.23, 39.95])
    assert point.tolist() == [0, 2]
    assert handle.tolist() == [haidian, haidian]


def test_per_subject_memory_is_small() -> None:
    index = FenceIndex()
    h = index.add_shared_area("c", county(0))
    n = 2_000
    for sid in range(n):
        index.set_subject(
            10_000_000 + sid, h, [exclusion(sid * 5 + k, 110.0, 35.0) for k in range(5)]
        )
    assert len(index) == n
    # Subject table + 5 exclusion entries: tens of bytes, independent of the polygon.
    assert index.subject_bytes / n <= 100
    assert index.own_zone_bytes / n <= 5 * 20
