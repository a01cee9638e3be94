"""Tests for geofences.geojson: validation slugs, repairs, CRS handling and DataV import."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely import MultiPolygon, Point, Polygon, box, get_coordinates

from geofences.crs import CRS, gcj02_to_wgs84, transform_geometry
from geofences.errors import GeometryError, UnknownAdcodeError
from geofences.geojson import (
    AdminArea,
    ParsedGeometry,
    parse_datav,
    parse_geometry,
    resolve_adcodes,
    union_areas,
)

pytestmark = pytest.mark.unit

DATAV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "boundaries"
DATAV = DATAV / "datav_GeoMapData_CN"

Ring = list[list[float]]
SQUARE: Ring = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]


def polygon(*rings: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def multipolygon(*polygons: Any) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": list(polygons)}


def square(x: float, y: float, size: float) -> Ring:
    return [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]


def load_datav(relative: str) -> dict[str, Any]:
    path = DATAV / relative
    if not path.exists():
        pytest.skip(f"DataV boundary {relative} not found under {DATAV} (shared test data)")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


# Each case: (problem slug, geometry, keyword arguments, text the message must contain).
REJECTED: list[tuple[str, Any, dict[str, Any], str]] = [
    ("wrong_type", {"type": "Point", "coordinates": [116.4, 39.9]}, {}, "'Point'"),
    ("wrong_type", {"type": "LineString", "coordinates": SQUARE}, {}, "'LineString'"),
    ("wrong_type", [SQUARE], {}, "list"),
    ("wrong_type", {"type": "Polygon"}, {}, "no coordinates"),
    ("wrong_type", {"type": "Polygon", "coordinates": "[[0, 0]]"}, {}, "no coordinates"),
    ("wrong_type", multipolygon([SQUARE], SQUARE[0]), {}, "polygon 1"),
    ("wrong_type", polygon(SQUARE, 7), {}, "ring 1"),
    ("wrong_type", polygon([[0, 0], [1, 0], ["1", 1], [0, 0]]), {}, "ring 0, position 2"),
    ("wrong_type", polygon([[0, 0], [1, 0], [True, 1], [0, 0]]), {}, "position 2"),
    ("wrong_type", polygon([[0, 0], [1], [1, 1], [0, 0]]), {}, "position 1"),
    ("wrong_type", polygon([[0, 0], [1, 0, 0, 0], [1, 1], [0, 0]]), {}, "position 1"),
    ("empty", polygon(), {}, "no rings"),
    ("empty", multipolygon(), {}, "no coordinates"),
    ("empty", multipolygon([SQUARE], []), {}, "polygon 1"),
    ("not_finite", polygon([[0, 0], [1, math.nan], [1, 1], [0, 0]]), {}, "position 1"),
    ("not_finite", polygon([[0, 0], [math.inf, 0], [1, 1], [0, 0]]), {}, "position 1"),
    (
        "coordinates_out_of_range",
        polygon([[0, 0], [181, 0], [181, 1], [0, 0]]),
        {},
        "position 1",
    ),
    (
        "coordinates_out_of_range",
        polygon([[100, 0], [120, 95], [100, 95], [100, 0]]),
        {},
        "position 1",
    ),
    (
        "lat_lon_swapped",
        polygon([[39.9, 116.4], [39.9, 116.5], [40.0, 116.5], [39.9, 116.4]]),
        {},
        "[39.9, 116.4]",
    ),
    # In range both ways: as [lon, lat] this is in the Arctic, as [lat, lon] in Xinjiang.
    (
        "lat_lon_swapped",
        polygon([[43.8, 87.6], [43.8, 87.7], [43.9, 87.7], [43.8, 87.6]]),
        {},
        "inside it as [lat, lon]",
    ),
    ("degenerate_ring", polygon([[0, 0], [1, 0], [0, 0]]), {}, "3 positions"),
    ("degenerate_ring", polygon([]), {}, "ring 0 has 0 positions"),
    ("degenerate_ring", polygon(SQUARE, [[0.2, 0.2], [0.2, 0.2]]), {}, "ring 1"),
    ("unclosed_ring", polygon([[0, 0], [1, 0], [1, 1], [0, 1]]), {}, "ends at [0.0, 1.0]"),
    (
        "unclosed_ring",
        multipolygon([SQUARE], [[*square(5, 5, 1)[:-1], [5.0, 5.5]]]),
        {},
        "polygon 1, ring 0",
    ),
    ("too_many_vertices", polygon(SQUARE), {"max_vertices": 4}, "5 vertices"),
    (
        "too_many_vertices",
        multipolygon([SQUARE], [square(5, 5, 1)]),
        {"max_vertices": 9},
        "10 vertices",
    ),
    (
        "self_intersection",
        polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]),
        {},
        "Self-intersection[0.5 0.5]",
    ),
    ("self_intersection", polygon([[0, 0], [1, 0], [2, 0], [0, 0]]), {}, "Self-intersection"),
    ("hole_outside_shell", polygon(SQUARE, square(5, 5, 1)), {}, "Hole lies outside shell"),
    (
        "nested_holes",
        polygon(square(0, 0, 10), square(1, 1, 8), square(2, 2, 1)),
        {},
        "Holes are nested",
    ),
    ("nested_shells", multipolygon([square(0, 0, 10)], [square(1, 1, 1)]), {}, "Nested shells"),
    (
        "disconnected_interior",
        polygon(square(0, 0, 4), [[0, 2], [2, 0], [4, 2], [2, 4], [0, 2]]),
        {},
        "Interior is disconnected",
    ),
]


@pytest.mark.parametrize(
    ("problem", "geometry", "kwargs", "detail"),
    REJECTED,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(REJECTED)],
)
def test_rejections_name_problem_feature_and_place(
    problem: str, geometry: Any, kwargs: dict[str, Any], detail: str
) -> None:
    with pytest.raises(GeometryError) as caught:
        parse_geometry(geometry, feature="fence 7", **kwargs)
    assert caught.value.problem == problem
    assert caught.value.feature == "fence 7"
    message = str(caught.value)
    assert message.startswith(f"{problem} in feature fence 7: ")
    assert detail in message


def test_errors_are_value_errors_and_feature_is_optional() -> None:
    with pytest.raises(ValueError, match=r"^unclosed_ring: ring 0 starts at"):
        parse_geometry(polygon(SQUARE[:-1]))


def test_vertex_limit_is_inclusive() -> None:
    parsed = parse_geometry(polygon(SQUARE), max_vertices=5)
    assert parsed.geometry.equals(box(0, 0, 1, 1))


def test_valid_polygon_with_hole_and_altitude() -> None:
    # GeoJSON allows a third value; it is dropped, not rejected. Tuples work like lists, so
    # shapely's own mapping() output is accepted.
    shell = [(x, y, 50.0) for x, y in square(0, 0, 4)]
    parsed = parse_geometry({"type": "Polygon", "coordinates": (shell, square(1, 1, 1))})
    assert parsed == ParsedGeometry(parsed.geometry, ())
    assert isinstance(parsed.geometry, Polygon)
    assert not parsed.geometry.has_z
    assert len(parsed.geometry.interiors) == 1
    assert parsed.geometry.area == pytest.approx(15.0)
    again = parse_geometry(shapely.geometry.mapping(parsed.geometry))
    assert again.geometry.equals(parsed.geometry)


def test_multipolygon_stays_multipart() -> None:
    parsed = parse_geometry(multipolygon([square(0, 0, 1)], [square(5, 5, 1)]))
    assert isinstance(parsed.geometry, MultiPolygon)
    assert len(parsed.geometry.geoms) == 2


def test_bow_tie_repair_is_reported() -> None:
    bow_tie = polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]])
    parsed = parse_geometry(bow_tie, repair=True, feature="fence 7")
    assert isinstance(parsed.geometry, MultiPolygon)
    assert len(parsed.geometry.geoms) == 2
    assert parsed.geometry.is_valid
    assert parsed.geometry.area == pytest.approx(0.5)
    (repair,) = parsed.repairs
    assert repair.startswith("self_intersection: Self-intersection[0.5 0.5] in wgs84")
    assert "make_valid" in repair


def test_repair_keeps_only_polygonal_parts_and_reports_area_change() -> None:
    # A square with a zero-width spike: the spike collapses to a line and is dropped.
    spiked = polygon([[0, 0], [1, 0], [1, 1], [1, 2], [1, 1], [0, 1], [0, 0]])
    parsed = parse_geometry(spiked, repair=True)
    assert parsed.geometry.equals(box(0, 0, 1, 1))
    (repair,) = parsed.repairs
    assert repair.startswith("self_intersection")
    assert "area +0.000%" in repair


def test_repair_that_leaves_no_area_is_an_error() -> None:
    flat = polygon([[0, 0], [1, 0], [2, 0], [0, 0]])
    with pytest.raises(GeometryError, match="repair left no area") as caught:
        parse_geometry(flat, repair=True)
    assert caught.value.problem == "self_intersection"


def test_repair_never_touches_structural_problems() -> None:
    with pytest.raises(GeometryError) as caught:
        parse_geometry(polygon(SQUARE[:-1]), repair=True)
    assert caught.value.problem == "unclosed_ring"


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09], ids=str)
def test_holes_survive_crs_conversion(crs: CRS) -> None:
    shell = square(116.2, 39.8, 0.4)
    hole = square(116.3, 39.9, 0.1)
    parsed = parse_geometry(polygon(shell, hole), crs=crs)
    geometry = parsed.geometry
    assert isinstance(geometry, Polygon)
    assert len(geometry.interiors) == 1
    expected = transform_geometry(Polygon(shell, [hole]), crs, CRS.WGS84)
    np.testing.assert_array_equal(get_coordinates(geometry), get_coordinates(expected))
    # The offset (hundreds of metres) was applied ...
    assert abs(geometry.exterior.coords[0][0] - 116.2) > 0.004
    # ... and a point in the converted hole is outside, one beside it inside.
    in_hole = transform_geometry(Point(116.35, 39.95), crs, CRS.WGS84)
    beside_hole = transform_geometry(Point(116.25, 39.95), crs, CRS.WGS84)
    assert not geometry.contains(in_hole)
    assert geometry.contains(beside_hole)


def test_crs_given_as_string() -> None:
    as_text = parse_geometry(polygon(square(116.3, 39.9, 0.1)), crs="gcj02")
    as_enum = parse_geometry(polygon(square(116.3, 39.9, 0.1)), crs=CRS.GCJ02)
    assert as_text.geometry.equals(as_enum.geometry)


# --- DataV import -------------------------------------------------------------------------


def datav_feature(adcode: Any, name: str | None, geometry: Any, **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"adcode": adcode, "name": name, "level": "district"}
    properties.update(extra)
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def feature_collection(*features: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def test_datav_properties_are_read() -> None:
    ring = square(116.3, 39.9, 0.1)
    fc = feature_collection(
        datav_feature(110108, "海淀区", multipolygon([ring]), parent={"adcode": 110000}),
        datav_feature("110105", "朝阳区", polygon(square(116.4, 39.9, 0.1)), parent=None),
    )
    first, second = parse_datav(fc, crs=CRS.WGS84)
    assert first == AdminArea("110108", "海淀区", "110000", "district", first.geometry)
    assert isinstance(first.geometry, MultiPolygon)
    assert first.geometry.equals(MultiPolygon([Polygon(ring)]))
    assert (second.adcode, second.parent_adcode) == ("110105", None)
    # The default CRS is GCJ-02, DataV's own.
    (gcj,) = parse_datav(feature_collection(fc["features"][0]))
    assert not gcj.geometry.equals(first.geometry)
    assert gcj.geometry.equals(transform_geometry(first.geometry, CRS.GCJ02, CRS.WGS84))


@pytest.mark.parametrize(
    ("fc", "problem", "feature", "detail"),
    [
        ({"type": "Feature"}, "wrong_type", None, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": {}}, "wrong_type", None, "features array"),
        (feature_collection("not a feature"), "wrong_type", "#0", "Feature"),
        (
            feature_collection(datav_feature(None, "无码区", polygon(SQUARE))),
            "missing_property",
            "#0 无码区",
            "adcode",
        ),
        (
            feature_collection(
                datav_feature(110101, "东城区", polygon(SQUARE)),
                {"type": "Feature", "properties": None, "geometry": polygon(SQUARE)},
            ),
            "missing_property",
            "#1",
            "adcode",
        ),
        (
            feature_collection(datav_feature(True, "真区", polygon(SQUARE))),
            "missing_property",
            "#0 真区",
            "True",
        ),
        (
            feature_collection(datav_feature(110101, "东城区", None)),
            "missing_property",
            "110101 东城区",
            "geometry",
        ),
        (
            feature_collection(
                datav_feature(110101, "东城区", polygon(SQUARE)),
                datav_feature("110101", "东城区", polygon(SQUARE)),
            ),
            "duplicate_adcode",
            "110101 东城区",
            "same adcode",
        ),
        (
            feature_collection(datav_feature(110101, None, polygon(SQUARE[:-1]))),
            "unclosed_ring",
            "110101",
            "ring 0",
        ),
    ],
)
def test_datav_errors_name_the_feature(
    fc: Any, problem: str, feature: str | None, detail: str
) -> None:
    with pytest.raises(GeometryError) as caught:
        parse_datav(fc, crs=CRS.WGS84)
    assert caught.value.problem == problem
    assert caught.value.feature == feature
    assert detail in str(caught.value)


@pytest.fixture(scope="module")
def beijing() -> dict[str, AdminArea]:
    fc = load_datav("province/110000.json")
    return {area.adcode: area for area in parse_datav(fc, repair=True)}


def test_beijing_simplified_file_has_a_self_intersection_named_by_district() -> None:
    fc = load_datav("province/110000.json")
    with pytest.raises(GeometryError) as caught:
        parse_datav(fc)
    assert caught.value.problem == "self_intersection"
    assert caught.value.feature == "110113 顺义区"


def test_beijing_districts_import(beijing: dict[str, AdminArea]) -> None:
    assert len(beijing) == 16
    assert {area.parent_adcode for area in beijing.values()} == {"110000"}
    assert {area.level for area in beijing.values()} == {"district"}
    assert beijing["110108"].name == "海淀区"
    assert all(area.geometry.is_valid for area in beijing.values())
    # Only the district that needed it was repaired, and it says so.
    repaired = {code for code, area in beijing.items() if area.repairs}
    assert repaired == {"110113"}
    # GCJ-02 in, WGS-84 out: 海淀's first vertex is the exact inverse of the file's.
    raw = next(
        f
        for f in load_datav("province/110000.json")["features"]
        if f["properties"]["adcode"] == 110108
    )
    raw_lon, raw_lat = raw["geometry"]["coordinates"][0][0][0]
    lon, lat = gcj02_to_wgs84(raw_lon, raw_lat)
    first = beijing["110108"].geometry.geoms[0].exterior.coords[0]
    assert first == pytest.approx((float(lon), float(lat)), abs=1e-12)


def test_resolve_beijing_codes(beijing: dict[str, AdminArea]) -> None:
    everything = sorted(beijing)
    # The province is not itself imported: its code means every district under "11".
    assert resolve_adcodes(beijing, ["110000"]) == everything
    # Nor is the city code 110100: by prefix "1101" it means the same 16 districts.
    assert resolve_adcodes(beijing, ["110100"]) == everything
    assert resolve_adcodes(beijing, ["110108", "110108", " 110105 "]) == ["110105", "110108"]
    for unknown in ["120000", "120100", "110199", "11010", "haidian"]:
        with pytest.raises(UnknownAdcodeError) as caught:
            resolve_adcodes(beijing, [unknown])
        assert caught.value.code == unknown.strip()
        assert isinstance(caught.value, LookupError)


def test_union_of_beijing(beijing: dict[str, AdminArea]) -> None:
    city = union_areas(beijing, ["110100"])
    assert city.is_valid
    total = sum(area.geometry.area for area in beijing.values())
    # Neighbouring districts share their borders: the union neither loses nor doubles area.
    assert city.area == pytest.approx(total, rel=1e-3)
    for area in beijing.values():
        assert city.contains(area.geometry.representative_point())
    assert union_areas(beijing, ["110108"]).equals(beijing["110108"].geometry)
    with pytest.raises(GeometryError) as caught:
        union_areas(beijing, [])
    assert caught.value.problem == "empty"


def _area(adcode: str, parent: str | None, geometry: Polygon | None = None) -> AdminArea:
    return AdminArea(adcode, None, parent, None, geometry or box(0, 0, 1, 1))


def test_resolve_follows_parent_links_recursively() -> None:
    areas = {
        "130000": _area("130000", "100000"),
        "130100": _area("130100", "130000"),
        "130102": _area("130102", "130100", box(0, 0, 1, 1)),
        "130104": _area("130104", "130100", box(1, 0, 2, 1)),
        "130200": _area("130200", "130000"),  # a city imported without its districts
        "140100": _area("140100", None),
        "140105": _area("140105", None),  # no parent link: found by prefix only
    }
    assert resolve_adcodes(areas, ["130000"]) == ["130102", "130104", "130200"]
    assert resolve_adcodes(areas, ["130100"]) == ["130102", "130104"]
    assert resolve_adcodes(areas, ["130200"]) == ["130200"]
    assert resolve_adcodes(areas, ["140000"]) == ["140100", "140105"]
    assert union_areas(areas, ["130100"]).equals(box(0, 0, 2, 1))


def test_resolve_survives_a_parent_cycle() -> None:
    areas = {"110101": _area("110101", "110102"), "110102": _area("110102", "110101")}
    assert resolve_adcodes(areas, ["110101"]) == ["110101"]
    assert resolve_adcodes(areas, ["110100"]) == ["110101", "110102"]


def test_oroqen_banner_keeps_its_hole_and_excludes_jiagedaqi() -> None:
    (banner,) = parse_datav(load_datav("county/150723.json"))
    (jiagedaqi,) = parse_datav(load_datav("county/232718.json"))
    assert banner.name == "鄂伦春自治旗"
    geometry = banner.geometry
    assert isinstance(geometry, MultiPolygon)
    (part,) = geometry.geoms
    assert len(part.interiors) == 1
    assert len(part.interiors[0].coords) == 160
    inside_hole = jiagedaqi.geometry.representative_point()
    assert not geometry.contains(inside_hole)
    # The same point is inside the banner's outer ring: only the hole keeps it out.
    assert Polygon(part.exterior).contains(inside_hole)
    # Jiagedaqi fills the hole: the two barely overlap.
    overlap = geometry.intersection(jiagedaqi.geometry).area
    assert overlap < 0.01 * jiagedaqi.geometry.area


def test_repair_limited_to_area_preserving_fixes() -> None:
    corner = [116.3, 39.9]
    touching = {
        "type": "Polygon",
        "coordinates": [
            [corner, [116.4, 39.9], [116.4, 40.0], corner, [116.2, 39.9], [116.2, 39.8], corner]
        ],
    }
    parsed = parse_geometry(touching, repair=True, max_repair_area_change=1e-4)
    assert parsed.repairs
    assert parsed.geometry.area == pytest.approx(0.01)
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(GeometryError) as info:
        parse_geometry(bowtie, repair=True, max_repair_area_change=1e-4)
    assert info.value.problem == "self_intersection"
    assert parse_geometry(bowtie, repair=True).repairs


def test_an_unimported_parent_code_means_the_areas_naming_it() -> None:
    areas = {
        code: AdminArea(code, None, parent, "district", box(0, 0, 1, 1))
        for code, parent in (("990101", "990100"), ("990102", "990100"), ("990103", "990000"))
    }
    # 990103 shares the city's prefix but names another parent: not part of 990100.
    assert resolve_adcodes(areas, ["990100"]) == ["990101", "990102"]
    assert resolve_adcodes(areas, ["990000"]) == ["990103"]
    # A city code nobody names falls back to the prefix rule.
    unnamed = {c: AdminArea(c, None, None, "district", box(0, 0, 1, 1)) for c in areas}
    assert resolve_adcodes(unnamed, ["990100"]) == ["990101", "990102", "990103"]
