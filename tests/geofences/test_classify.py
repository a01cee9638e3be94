"""Tests for geofences.classify: accuracy discs against polygons, holes and circles."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from geopy.distance import geodesic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofences.classify import (
    PreparedArea,
    classify,
    distance_outside_m,
    geodesic_distance_m,
    metres_per_degree,
)
from geofences.model import Circle, Membership

pytestmark = pytest.mark.unit

INSIDE, OUTSIDE, UNCERTAIN = Membership.INSIDE, Membership.OUTSIDE, Membership.UNCERTAIN


def star(
    lon0: float,
    lat0: float,
    radius_m: float,
    n: int,
    seed: int,
    hole: bool = False,
    noise: float = 0.4,
) -> shapely.Polygon:
    """A noisy star polygon about a centre, optionally with a central hole."""
    rng = np.random.default_rng(seed)
    east, north = metres_per_degree(lat0)
    # Jittered even angles keep every gap below pi, so the star stays simple about its centre.
    ang = (np.arange(n) + rng.uniform(0.0, 0.9, n)) * (2 * np.pi / n)
    r = radius_m * rng.uniform(1.0 - noise, 1.0, n)
    shell = np.column_stack((lon0 + r * np.cos(ang) / east, lat0 + r * np.sin(ang) / north))
    holes = []
    if hole:
        k = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        # 30 % of the radius, or less where an edge passes closer to the centre than that
        # (with few vertices it can): at most half the distance to the nearest edge.
        edges = shapely.LinearRing(np.column_stack((r * np.cos(ang), r * np.sin(ang))))
        hr = min(0.3 * radius_m, 0.5 * edges.distance(shapely.Point(0.0, 0.0)))
        holes.append(np.column_stack((lon0 + hr * np.cos(k) / east, lat0 + hr * np.sin(k) / north)))
    poly = shapely.Polygon(shell, holes)
    assert poly.is_valid
    return poly


def disc_points(lon: float, lat: float, radius_m: float, n: int = 72) -> npt.NDArray[np.float64]:
    """Points on the geodesic circle about (lon, lat), by geopy (lon, lat columns)."""
    out = []
    for bearing in np.linspace(0.0, 360.0, n, endpoint=False):
        p = geodesic(meters=radius_m).destination((lat, lon), float(bearing))
        out.append((p.longitude, p.latitude))
    return np.array(out)


def boundary_samples(
    poly: shapely.Polygon | shapely.MultiPolygon, per_edge: int = 8
) -> npt.NDArray[np.float64]:
    """Points along every ring, edges subdivided (lon, lat columns)."""
    out = []
    for ring in shapely.get_rings(shapely.get_parts(poly)):
        c = shapely.get_coordinates(ring)
        t = np.linspace(0.0, 1.0, per_edge, endpoint=False)[None, :, None]
        seg = c[:-1, None, :] + t * (c[1:, None, :] - c[:-1, None, :])
        out.append(seg.reshape(-1, 2))
    return np.concatenate(out)


def geopy_min_distance(lon: float, lat: float, pts: npt.NDArray[np.float64]) -> float:
    return float(min(geodesic((lat, lon), (p[1], p[0])).meters for p in pts))


# ------------------------------------------------------------------ geodesy


@settings(max_examples=200, deadline=None)
@given(
    st.floats(73.0, 135.0),
    st.floats(17.0, 54.0),
    st.floats(-3.0, 3.0),
    st.floats(-3.0, 3.0),
    st.sampled_from([1e-6, 1e-3, 1.0]),
)
def test_vincenty_matches_geopy(lon: float, lat: float, dlon: float, dlat: float, s: float) -> None:
    lon2, lat2 = lon + dlon * s, lat + dlat * s
    ours = float(geodesic_distance_m(lon, lat, lon2, lat2))
    ref = geodesic((lat, lon), (lat2, lon2)).meters
    assert ours == pytest.approx(ref, abs=1e-3)


def test_vincenty_zero_and_far() -> None:
    assert float(geodesic_distance_m(116.0, 40.0, 116.0, 40.0)) == 0.0
    # Kashgar to Harbin, thousands of kilometres.
    ours = float(geodesic_distance_m(75.99, 39.47, 126.53, 45.80))
    assert ours == pytest.approx(geodesic((39.47, 75.99), (45.80, 126.53)).meters, abs=1e-3)


# ------------------------------------------------------------------ examples


def test_box_inside_outside_uncertain() -> None:
    area = PreparedArea(shapely.box(116.0, 39.0, 116.01, 39.01))
    east, _ = metres_per_degree(39.005)
    # The east edge is ~431 m from the centre.
    half = 0.005 * east
    got = classify(
        area, [116.005] * 4 + [116.02], [39.005] * 5, [10.0, half - 2, half + 2, math.inf, 10.0]
    )
    assert got.tolist() == [INSIDE, INSIDE, UNCERTAIN, UNCERTAIN, OUTSIDE]
    assert got.dtype == np.int8


def test_disc_touching_from_outside_is_uncertain() -> None:
    area = PreparedArea(shapely.box(116.0, 39.0, 116.01, 39.01))
    # 100 m east of the east edge: a 99 m disc is outside, a 101 m disc reaches the area.
    east, _ = metres_per_degree(39.005)
    lon = 116.01 + 100.0 / east
    assert classify(area, [lon, lon], [39.005, 39.005], [99.0, 101.0]).tolist() == [
        OUTSIDE,
        UNCERTAIN,
    ]


def test_point_on_boundary_with_zero_accuracy_is_uncertain() -> None:
    area = PreparedArea(shapely.box(116.0, 39.0, 116.01, 39.01))
    assert classify(area, [116.01], [39.005], [0.0]).tolist() == [UNCERTAIN]


def test_hole_is_outside() -> None:
    poly = star(116.4, 39.9, 20_000, 300, seed=3, hole=True)
    area = PreparedArea(poly)
    # The hole is a 6 km circle about the centre.
    got = classify(area, [116.4, 116.4], [39.9, 39.9 + 10_000 / 111_000], [50.0, 50.0])
    assert got.tolist() == [OUTSIDE, INSIDE]
    assert classify(area, [116.4], [39.9], [7_000.0]).tolist() == [UNCERTAIN]
    # The hole is a 12-gon of circumradius 6 km: its edges are 6 km x cos(15°) from the centre.
    expected = 6_000 * math.cos(math.pi / 12)
    assert distance_outside_m(area, [116.4], [39.9])[0] == pytest.approx(expected, rel=1e-3)


def test_multipolygon_parts() -> None:
    a = shapely.box(116.0, 39.0, 116.1, 39.1)
    b = shapely.box(116.3, 39.0, 116.4, 39.1)
    area = PreparedArea(shapely.MultiPolygon([a, b]))
    got = classify(area, [116.05, 116.35, 116.2, 116.1], [39.05, 39.05, 39.05, 39.05], [30.0] * 4)
    assert got.tolist() == [INSIDE, INSIDE, OUTSIDE, UNCERTAIN]


def test_circle_area() -> None:
    c = Circle(116.39, 39.91, 500.0)
    area = PreparedArea(c)
    _, north = metres_per_degree(39.91)
    lats = [
        39.91,
        39.91 + 400 / north,
        39.91 + 400 / north,
        39.91 + 700 / north,
        39.91 + 700 / north,
    ]
    got = classify(area, [116.39] * 5, lats, [50.0, 90.0, 110.0, 150.0, 250.0])
    assert got.tolist() == [INSIDE, INSIDE, UNCERTAIN, OUTSIDE, UNCERTAIN]
    d = distance_outside_m(area, [116.39, 116.39], [39.91, 39.91 + 700 / north])
    assert d[0] == 0.0
    assert d[1] == pytest.approx(200.0, abs=0.5)


@pytest.mark.parametrize(
    ("lon", "lat", "acc", "message"),
    [
        ([np.nan], [39.0], [10.0], "NaN"),
        ([116.0], [np.nan], [10.0], "NaN"),
        ([116.0], [39.0], [np.nan], "accuracy_m"),
        ([116.0], [39.0], [-1.0], "accuracy_m"),
        ([200.0], [39.0], [10.0], "degrees"),
        ([116.0, 117.0], [39.0, 39.0, 39.0], [10.0], "broadcast|shape"),
    ],
)
def test_rejects_bad_input(
    lon: list[float], lat: list[float], acc: list[float], message: str
) -> None:
    area = PreparedArea(shapely.box(116.0, 39.0, 116.01, 39.01))
    with pytest.raises(ValueError, match=message):
        classify(area, lon, lat, acc)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="Polygon, MultiPolygon or Circle"):
        PreparedArea(shapely.Point(0, 0))
    with pytest.raises(ValueError, match="empty"):
        PreparedArea(shapely.Polygon())


def test_raster_answers_equal_the_exact_test() -> None:
    """The raster only shortcuts: answers equal the exact test on every fix."""
    poly = star(87.6, 43.8, 40_000, 2_000, seed=11, hole=True, noise=0.05)
    rng = np.random.default_rng(5)
    x0, y0, x1, y1 = poly.bounds
    n = 20_000
    lon = rng.uniform(x0 - 0.05, x1 + 0.05, n)
    lat = rng.uniform(y0 - 0.05, y1 + 0.05, n)
    acc = rng.choice([5.0, 20.0, 50.0, 300.0, 3_000.0, 30_000.0], n)
    fine, coarse = PreparedArea(poly), PreparedArea(poly, grid_cells=4)
    got = classify(fine, lon, lat, acc)
    x, y = fine.project(lon, lat)
    exact = fine._exact(x, y, lat, acc)
    np.testing.assert_array_equal(got, exact)
    np.testing.assert_array_equal(classify(coarse, lon, lat, acc), exact)
    # Ordinary GPS discs are nearly always decided, and every outcome occurs.
    assert np.mean(got[acc <= 50.0] == UNCERTAIN) < 0.05
    assert set(np.unique(got).tolist()) == {0, 1, 2}


# ------------------------------------------------------------------ properties


@st.composite
def area_and_fix(draw: st.DrawFn) -> tuple[shapely.Polygon, float, float, float]:
    lon0 = draw(st.floats(74.0, 134.0))
    lat0 = draw(st.floats(18.0, 53.0))
    radius = draw(st.sampled_from([300.0, 3_000.0, 30_000.0]))
    poly = star(
        lon0,
        lat0,
        radius,
        draw(st.integers(5, 40)),
        draw(st.integers(0, 2**16)),
        draw(st.booleans()),
    )
    acc = draw(st.sampled_from([1.0, 5.0, 20.0, 50.0, 200.0, 1_500.0]))
    # A fix near a random boundary point, within a few accuracy radii of it.
    ring = shapely.get_coordinates(
        poly.exterior if draw(st.booleans()) or not poly.interiors else poly.interiors[0]
    )
    i = draw(st.integers(0, len(ring) - 2))
    t = draw(st.floats(0.0, 1.0))
    bx, by = ring[i] + t * (ring[i + 1] - ring[i])
    east, north = metres_per_degree(by)
    dist = acc * draw(st.floats(0.0, 2.5))
    bearing = draw(st.floats(0.0, 2 * math.pi))
    lon = bx + dist * math.cos(bearing) / east
    lat = by + dist * math.sin(bearing) / north
    return poly, lon, lat, acc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(area_and_fix())
def test_decisions_hold_for_the_geodesic_disc(
    case: tuple[shapely.Polygon, float, float, float],
) -> None:
    poly, lon, lat, acc = case
    area = PreparedArea(poly)
    got = int(classify(area, [lon], [lat], [acc])[0])
    if got == UNCERTAIN:
        return
    rim = disc_points(lon, lat, acc)
    rim_inside = shapely.contains_xy(poly, rim[:, 0], rim[:, 1])
    centre_inside = bool(shapely.contains_xy(poly, lon, lat))
    # Boundary points closer than the accuracy would lie in the disc: the disc crosses.
    nearest = geopy_min_distance(lon, lat, boundary_samples(poly))
    assert nearest >= acc * (1 - 1e-9)
    if got == INSIDE:
        assert centre_inside
        assert rim_inside.all()
    else:
        assert not centre_inside
        assert not rim_inside.any()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(area_and_fix())
def test_clear_cases_are_decided(case: tuple[shapely.Polygon, float, float, float]) -> None:
    """Not needlessly uncertain: a disc clear of the boundary by 1 % (plus 1 m) is decided."""
    poly, lon, lat, acc = case
    area = PreparedArea(poly)
    east, north = metres_per_degree(lat)
    local = shapely.transform(
        poly, lambda c: np.column_stack(((c[:, 0] - lon) * east, (c[:, 1] - lat) * north))
    )
    # A local equirectangular projection about the fix is accurate to well under 1 % here.
    clearance = float(shapely.distance(local.boundary, shapely.Point(0.0, 0.0)))
    got = int(classify(area, [lon], [lat], [acc])[0])
    if clearance > acc * 1.01 + 1.0:
        expected = INSIDE if shapely.contains_xy(poly, lon, lat) else OUTSIDE
        assert got == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(area_and_fix())
def test_distance_outside_matches_geopy(case: tuple[shapely.Polygon, float, float, float]) -> None:
    poly, lon, lat, _ = case
    area = PreparedArea(poly)
    d = float(distance_outside_m(area, [lon], [lat])[0])
    if shapely.intersects_xy(poly, lon, lat):
        assert d == 0.0
        return
    # Never more than the nearest sampled boundary point, and not less than the true distance
    # (samples are a sixteenth of an edge apart, which bounds the gap).
    samples = boundary_samples(poly, per_edge=16)
    ref = geopy_min_distance(lon, lat, samples)
    assert d <= ref + 1e-3
    rings = shapely.get_coordinates(shapely.get_rings(poly))
    edge = float(
        np.max(geodesic_distance_m(rings[:-1, 0], rings[:-1, 1], rings[1:, 0], rings[1:, 1]))
    )
    assert d >= ref - edge / 16


@settings(max_examples=100, deadline=None)
@given(
    st.floats(74.0, 134.0),
    st.floats(18.0, 53.0),
    st.floats(10.0, 5_000.0),
    st.floats(0.0, 3.0),
    st.floats(0.0, 360.0),
    st.floats(1.0, 2_000.0),
)
def test_circle_decisions_hold(
    lon: float, lat: float, radius: float, rel: float, bearing: float, acc: float
) -> None:
    p = geodesic(meters=radius * rel).destination((lat, lon), bearing)
    got = int(
        classify(PreparedArea(Circle(lon, lat, radius)), [p.longitude], [p.latitude], [acc])[0]
    )
    d = geodesic((lat, lon), (p.latitude, p.longitude)).meters
    if got == INSIDE:
        assert d + acc <= radius + 1e-6
    elif got == OUTSIDE:
        assert d - acc > radius - 1e-6
    elif abs(d - radius) > acc + 1e-3:
        pytest.fail(f"undecided although the disc is clear: d={d}, r={radius}, acc={acc}")


def test_spherical_prefilter_is_a_lower_bound() -> None:
    """The far-fix shortcut relies on spherical distance x 0.99 never exceeding the geodesic one."""
    from geofences.classify import _SPHERE_LOWER, _spherical_distance_m

    rng = np.random.default_rng(2)
    lon1, lat1 = rng.uniform(70, 140, 400), rng.uniform(10, 56, 400)
    lon2, lat2 = rng.uniform(70, 140, 400), rng.uniform(10, 56, 400)
    ref = np.array(
        [geodesic((a, b), (c, d)).meters for a, b, c, d in zip(lat1, lon1, lat2, lon2, strict=True)]
    )
    assert np.all(_SPHERE_LOWER * _spherical_distance_m(lon1, lat1, lon2, lat2) <= ref)
