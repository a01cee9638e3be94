"""Tests for geofences.crs against published test vectors and round-trip properties."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from geopy.distance import geodesic
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import ArrayLike, NDArray
from shapely import LineString, MultiPolygon, Point, Polygon, get_coordinates

from geofences.crs import (
    CRS,
    bd09_to_gcj02,
    bd09_to_wgs84,
    convert,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    to_wgs84,
    transform_geometry,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent / "data"
DEGREE_TOLERANCE = 1e-5

Pair = tuple[NDArray[np.float64], NDArray[np.float64]]
Transform = Callable[[ArrayLike, ArrayLike], Pair]


def _read_csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        # The first line of each copied file names its source.
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _metres(lon_a: float, lat_a: float, lon_b: float, lat_b: float) -> float:
    distance: float = geodesic((lat_a, lon_a), (lat_b, lon_b)).meters
    return distance


@dataclass(frozen=True)
class Vector:
    """One row of coord_test_vectors.csv, in (lon, lat) order."""

    case: str
    source: str
    src: CRS
    dst: CRS
    lon: float
    lat: float
    expected_lon: float
    expected_lat: float


def _vectors() -> list[Vector]:
    return [
        Vector(
            case=row["case"],
            source=row["source_repo"],
            src=CRS(row["from_crs"].lower()),
            dst=CRS(row["to_crs"].lower()),
            lon=float(row["in_lon"]),
            lat=float(row["in_lat"]),
            expected_lon=float(row["expected_lon"]),
            expected_lat=float(row["expected_lat"]),
        )
        for row in _read_csv("coord_test_vectors.csv")
    ]


VECTORS = _vectors()
IN_CHINA_VECTORS = [v for v in VECTORS if not v.case.endswith("out_of_china")]
OUT_OF_CHINA_VECTORS = [v for v in VECTORS if v.case.endswith("out_of_china")]
DIRECT: dict[tuple[CRS, CRS], Transform] = {
    (CRS.WGS84, CRS.GCJ02): wgs84_to_gcj02,
    (CRS.GCJ02, CRS.WGS84): gcj02_to_wgs84,
    (CRS.GCJ02, CRS.BD09): gcj02_to_bd09,
    (CRS.BD09, CRS.GCJ02): bd09_to_gcj02,
    (CRS.WGS84, CRS.BD09): wgs84_to_bd09,
    (CRS.BD09, CRS.WGS84): bd09_to_wgs84,
}


def _vector_id(vector: Vector) -> str:
    return f"{vector.source.split('/')[1]}-{vector.case}-{vector.src}-{vector.dst}"


def test_vector_table_has_every_kind_of_case() -> None:
    pairs = {(v.src, v.dst) for v in IN_CHINA_VECTORS}
    assert pairs >= {
        (CRS.WGS84, CRS.GCJ02),
        (CRS.GCJ02, CRS.WGS84),
        (CRS.GCJ02, CRS.BD09),
        (CRS.BD09, CRS.GCJ02),
    }
    assert len(OUT_OF_CHINA_VECTORS) == 3


@pytest.mark.parametrize("vector", IN_CHINA_VECTORS, ids=_vector_id)
def test_published_vectors(vector: Vector) -> None:
    exact = not vector.case.endswith("_approx")
    if vector.dst == CRS.WGS84:
        lon, lat = gcj02_to_wgs84(vector.lon, vector.lat, exact=exact)
    else:
        lon, lat = DIRECT[vector.src, vector.dst](vector.lon, vector.lat)
    assert float(lon) == pytest.approx(vector.expected_lon, abs=DEGREE_TOLERANCE)
    assert float(lat) == pytest.approx(vector.expected_lat, abs=DEGREE_TOLERANCE)
    # convert() reaches the same result by its own route.
    if exact:
        c_lon, c_lat = convert(vector.lon, vector.lat, vector.src, vector.dst)
        assert float(c_lon) == pytest.approx(float(lon), abs=1e-12)
        assert float(c_lat) == pytest.approx(float(lat), abs=1e-12)


def test_one_step_inverse_is_the_published_approximation() -> None:
    (vector,) = [v for v in VECTORS if v.case == "tiananmen_gcj02towgs84_approx"]
    lon, lat = gcj02_to_wgs84(vector.lon, vector.lat, exact=False)
    assert float(lon) == pytest.approx(vector.expected_lon, abs=1e-9)
    assert float(lat) == pytest.approx(vector.expected_lat, abs=1e-9)


EVILTRANSFORM_INVERSES = [
    v
    for v in IN_CHINA_VECTORS
    if v.source == "googollee/eviltransform" and (v.src, v.dst) == (CRS.GCJ02, CRS.WGS84)
]


@pytest.mark.parametrize("vector", EVILTRANSFORM_INVERSES, ids=_vector_id)
def test_eviltransform_inverse_distances(vector: Vector) -> None:
    exact_lon, exact_lat = gcj02_to_wgs84(vector.lon, vector.lat, exact=True)
    rough_lon, rough_lat = gcj02_to_wgs84(vector.lon, vector.lat, exact=False)
    exact_error = _metres(
        float(exact_lon), float(exact_lat), vector.expected_lon, vector.expected_lat
    )
    rough_error = _metres(
        float(rough_lon), float(rough_lat), vector.expected_lon, vector.expected_lat
    )
    assert exact_error < 0.5
    assert rough_error < 5.0


@pytest.mark.parametrize("vector", OUT_OF_CHINA_VECTORS, ids=_vector_id)
@pytest.mark.parametrize(("src", "dst"), list(DIRECT), ids=lambda c: str(c))
def test_out_of_china_vectors_are_unchanged(vector: Vector, src: CRS, dst: CRS) -> None:
    assert vector.expected_lon == vector.lon
    assert vector.expected_lat == vector.lat
    lon, lat = convert(vector.lon, vector.lat, src, dst)
    assert (float(lon), float(lat)) == (vector.lon, vector.lat)
    assert bool(out_of_china(vector.lon, vector.lat))


@pytest.fixture(scope="module")
def cities() -> dict[CRS, Pair]:
    rows = _read_csv("gcoord_china_cities_wgs_gcj_bd.csv")
    assert len(rows) == 664

    def column(name: str) -> NDArray[np.float64]:
        return np.array([float(row[name]) for row in rows])

    return {crs: (column(f"{crs}_lon"), column(f"{crs}_lat")) for crs in CRS}


@pytest.mark.parametrize(("src", "dst"), list(DIRECT), ids=lambda c: str(c))
def test_gcoord_china_cities(cities: dict[CRS, Pair], src: CRS, dst: CRS) -> None:
    lon, lat = DIRECT[src, dst](*cities[src])
    expected_lon, expected_lat = cities[dst]
    assert not out_of_china(*cities[src]).any()
    np.testing.assert_allclose(lon, expected_lon, rtol=0, atol=DEGREE_TOLERANCE)
    np.testing.assert_allclose(lat, expected_lat, rtol=0, atol=DEGREE_TOLERANCE)


def test_exact_inverse_converges_everywhere_in_china() -> None:
    lon, lat = np.meshgrid(np.linspace(73.0, 135.0, 125), np.linspace(1.0, 55.0, 109))
    w_lon, w_lat = gcj02_to_wgs84(lon, lat)
    g_lon, g_lat = wgs84_to_gcj02(w_lon, w_lat)
    assert np.abs(g_lon - lon).max() < 1e-9
    assert np.abs(g_lat - lat).max() < 1e-9
    # The one-step approximation is measurably worse, which is why exact is the default.
    r_lon, _ = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat, exact=False))
    assert np.abs(r_lon - lon).max() > 1e-6


@pytest.mark.parametrize(("src", "dst"), list(DIRECT), ids=lambda c: str(c))
def test_non_finite_positions_pass_through_without_warnings(src: CRS, dst: CRS) -> None:
    # Warnings are errors in this suite, so an overflow or invalid-value warning fails here.
    lon = np.array([math.nan, 116.4, -math.inf, 116.4])
    lat = np.array([39.9, math.inf, 39.9, math.nan])
    assert out_of_china(lon, lat).all()
    out_lon, out_lat = convert(lon, lat, src, dst)
    np.testing.assert_array_equal(out_lon, lon)
    np.testing.assert_array_equal(out_lat, lat)


def test_out_of_china_rectangle_edges() -> None:
    lon = np.array([72.004, 72.0039, 137.8347, 137.8348, 100.0, 100.0, 100.0, 100.0])
    lat = np.array([30.0, 30.0, 30.0, 30.0, 0.8293, 0.8292, 55.8271, 55.8272])
    assert out_of_china(lon, lat).tolist() == [False, True, False, True] * 2


def test_shapes_and_dtypes_are_kept() -> None:
    lon, lat = wgs84_to_gcj02(116, 40)
    assert lon.shape == ()
    assert lat.shape == ()
    assert lon.dtype == np.float64
    grid_lon = np.full((2, 3), 116.0, dtype=np.float32)
    grid_lat = np.full((2, 3), 40.0, dtype=np.float32)
    for src in CRS:
        for dst in CRS:
            out_lon, out_lat = convert(grid_lon, grid_lat, src, dst)
            assert out_lon.shape == out_lat.shape == (2, 3)
            assert out_lon.dtype == out_lat.dtype == np.float64
    # A scalar latitude broadcasts against an array of longitudes.
    row_lon, row_lat = gcj02_to_wgs84([116.0, 117.0], 40.0)
    assert row_lon.shape == row_lat.shape == (2,)


def test_same_crs_returns_a_copy() -> None:
    lon = np.array([116.0, 117.0])
    lat = np.array([40.0, 41.0])
    out_lon, out_lat = convert(lon, lat, "gcj02", CRS.GCJ02)
    np.testing.assert_array_equal(out_lon, lon)
    np.testing.assert_array_equal(out_lat, lat)
    out_lon[0] = 0.0
    assert lon[0] == 116.0


def test_unknown_crs_is_rejected() -> None:
    with pytest.raises(ValueError, match="epsg3857"):
        convert(116.0, 40.0, "epsg3857", CRS.WGS84)


@pytest.mark.parametrize("crs", list(CRS), ids=str)
def test_to_and_from_wgs84_are_the_direct_transforms(cities: dict[CRS, Pair], crs: CRS) -> None:
    wgs = cities[CRS.WGS84]
    there = from_wgs84(*wgs, crs)
    back = to_wgs84(*there, crs)
    if crs != CRS.WGS84:
        expected_there = DIRECT[CRS.WGS84, crs](*wgs)
        np.testing.assert_array_equal(there[0], expected_there[0])
        np.testing.assert_array_equal(there[1], expected_there[1])
        assert np.abs(there[0] - wgs[0]).min() > 1e-4  # it really moved
    np.testing.assert_allclose(back[0], wgs[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(back[1], wgs[1], rtol=0, atol=1e-5)


# Shapes for transform_geometry: a polygon with a hole and a two-part multipolygon, in Beijing.
SHELL = [(116.2, 39.8), (116.6, 39.8), (116.6, 40.1), (116.2, 40.1), (116.2, 39.8)]
HOLE = [(116.3, 39.9), (116.4, 39.9), (116.4, 40.0), (116.3, 40.0), (116.3, 39.9)]
HOLED = Polygon(SHELL, [HOLE])
TWO_PARTS = MultiPolygon([HOLED, Polygon([(117.0, 40.0), (117.1, 40.0), (117.0, 40.1)])])


@pytest.mark.parametrize(("src", "dst"), list(DIRECT), ids=lambda c: str(c))
def test_transform_geometry_keeps_structure(src: CRS, dst: CRS) -> None:
    moved = transform_geometry(TWO_PARTS, src, dst)
    assert isinstance(moved, MultiPolygon)
    assert len(moved.geoms) == 2
    assert [len(part.interiors) for part in moved.geoms] == [1, 0]
    assert moved.is_valid
    before = get_coordinates(TWO_PARTS)
    after = get_coordinates(moved)
    expected_lon, expected_lat = convert(before[:, 0], before[:, 1], src, dst)
    np.testing.assert_array_equal(after[:, 0], expected_lon)
    np.testing.assert_array_equal(after[:, 1], expected_lat)
    # The hole moved with the shell: a point in the moved hole is outside the moved polygon.
    hole_centre = transform_geometry(Point(116.35, 39.95), src, dst)
    assert not moved.contains(hole_centre)
    assert moved.geoms[0].interiors[0].envelope.contains(hole_centre)


def test_transform_geometry_round_trip_and_other_types() -> None:
    there = transform_geometry(HOLED, CRS.WGS84, CRS.BD09)
    back = transform_geometry(there, CRS.BD09, CRS.WGS84)
    np.testing.assert_allclose(get_coordinates(back), get_coordinates(HOLED), rtol=0, atol=5e-6)
    line = LineString([(116.3, 39.9), (116.4, 40.0)])
    moved_line = transform_geometry(line, "wgs84", "gcj02")
    assert isinstance(moved_line, LineString)
    assert moved_line.coords[0] == pytest.approx(
        tuple(float(v) for v in wgs84_to_gcj02(116.3, 39.9))
    )
    assert transform_geometry(HOLED, CRS.GCJ02, CRS.GCJ02) is HOLED


# The rectangle shrunk by 0.05°: converting moves a point by up to about 0.02°, so right at
# the rectangle's edge a point's image can lie outside it, where (as in every implementation
# of these formulas) the reverse transform leaves it alone.
CHINA_LON = st.floats(72.004 + 0.05, 137.8347 - 0.05)
CHINA_LAT = st.floats(0.8293 + 0.05, 55.8271 - 0.05)


@settings(max_examples=300, deadline=None)
@given(lon=CHINA_LON, lat=CHINA_LAT)
def test_wgs_gcj_round_trip_within_half_a_metre(lon: float, lat: float) -> None:
    g_lon, g_lat = wgs84_to_gcj02(lon, lat)
    # The offset is real: hundreds of metres almost everywhere.
    assert _metres(lon, lat, float(g_lon), float(g_lat)) > 1.0
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    assert _metres(lon, lat, float(w_lon), float(w_lat)) < 0.5


@settings(max_examples=300, deadline=None)
@given(lon=CHINA_LON, lat=CHINA_LAT)
def test_wgs_bd_round_trip_within_half_a_metre(lon: float, lat: float) -> None:
    b_lon, b_lat = wgs84_to_bd09(lon, lat)
    w_lon, w_lat = bd09_to_wgs84(b_lon, b_lat)
    assert _metres(lon, lat, float(w_lon), float(w_lat)) < 0.5


OUTSIDE_CHINA = st.tuples(st.floats(-180.0, 180.0), st.floats(-90.0, 90.0)).filter(
    lambda p: bool(out_of_china(*p))
)


@settings(max_examples=200, deadline=None)
@given(point=OUTSIDE_CHINA)
def test_points_outside_china_are_unchanged(point: tuple[float, float]) -> None:
    lon, lat = point
    for transform in DIRECT.values():
        out_lon, out_lat = transform(lon, lat)
        assert (float(out_lon), float(out_lat)) == (lon, lat)
    out_lon, out_lat = gcj02_to_wgs84(lon, lat, exact=False)
    assert (float(out_lon), float(out_lat)) == (lon, lat)
