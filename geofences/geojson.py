"""Import of fence geometry from GeoJSON and of administrative areas from DataV files.

Input comes from officers drawing fences and from boundary files, so it is checked before
any geometry is built, and every rejection names the problem (a slug, see
:class:`~geofences.errors.GeometryError`) and the feature. Repairs happen only when asked
for and are always reported. Everything returned is in WGS-84, (lon, lat).

Administrative areas (行政区划) follow the DataV.GeoAtlas format: a FeatureCollection with
``adcode``, ``name``, ``level`` and ``parent.adcode`` properties, in GCJ-02.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely import MultiPolygon, Polygon

from geofences.crs import CRS, out_of_china, transform_geometry
from geofences.errors import GeometryError, UnknownAdcodeError

__all__ = [
    "AdminArea",
    "ParsedGeometry",
    "parse_datav",
    "parse_geometry",
    "resolve_adcodes",
    "union_areas",
]

DEFAULT_MAX_VERTICES = 200_000

# GEOS validity reasons (shapely.is_valid_reason, text before the "[x y]" location) and the
# slug each is reported as.
_VALIDITY_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("Ring Self-intersection", "self_intersection"),
    ("Self-intersection", "self_intersection"),
    ("Hole lies outside shell", "hole_outside_shell"),
    ("Holes are nested", "nested_holes"),
    ("Nested shells", "nested_shells"),
    ("Interior is disconnected", "disconnected_interior"),
    ("Duplicate Rings", "duplicate_rings"),
    ("Too few", "degenerate_ring"),
)


@dataclass(frozen=True)
class ParsedGeometry:
    """A validated polygonal geometry in WGS-84 and the repairs made to obtain it.

    Attributes
    ----------
    geometry : shapely.Polygon or shapely.MultiPolygon
        Valid, in WGS-84 (lon, lat) degrees, of the type the input declared unless a repair
        split a polygon into several parts.
    repairs : tuple of str
        One sentence per repair made (empty when the input was valid as given).
    """

    geometry: Polygon | MultiPolygon
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdminArea:
    """An administrative area (行政区划: province, city, county or district) with its boundary.

    Attributes
    ----------
    adcode : str
        The six-digit administrative division code, e.g. ``"110108"`` for 海淀区.
    name : str or None
        The official name, e.g. ``"海淀区"``.
    parent_adcode : str or None
        The adcode of the enclosing area, when the source gives one.
    level : str or None
        DataV's level: ``"province"``, ``"city"`` or ``"district"``.
    geometry : shapely.Polygon or shapely.MultiPolygon
        The boundary in WGS-84 (lon, lat) degrees.
    repairs : tuple of str
        The repairs made to the boundary on import (see :class:`ParsedGeometry`).
    """

    adcode: str
    name: str | None
    parent_adcode: str | None
    level: str | None
    geometry: Polygon | MultiPolygon
    repairs: tuple[str, ...] = ()


_PLAIN_NUMBERS = (float, int)


def _is_number(value: object) -> bool:
    # Numbers only: bool is an int subclass, and numpy would convert strings silently.
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def _is_array(value: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    return isinstance(value, list | tuple)


class _Rings:
    """The rings of a Polygon or MultiPolygon as arrays, with where each came from."""

    def __init__(self, multi: bool) -> None:
        self.multi = multi
        # Per polygon, per ring: an (n, 2) float64 array of (lon, lat).
        self.polygons: list[list[NDArray[np.float64]]] = []

    def where(self, polygon: int, ring: int, position: int | None = None) -> str:
        text = f"polygon {polygon}, ring {ring}" if self.multi else f"ring {ring}"
        return text if position is None else f"{text}, position {position}"

    def all_positions(self) -> NDArray[np.float64]:
        arrays = [ring for polygon in self.polygons for ring in polygon]
        return np.concatenate(arrays) if arrays else np.empty((0, 2))

    def locate(self, flat_index: int) -> str:
        """Say where the ``flat_index``-th position of :meth:`all_positions` is."""
        remaining = flat_index
        for p, polygon in enumerate(self.polygons):
            for r, ring in enumerate(polygon):
                if remaining < len(ring):
                    return self.where(p, r, remaining)
                remaining -= len(ring)
        raise IndexError(flat_index)


def _read_structure(
    obj: Mapping[str, Any], max_vertices: int, feature: str | None
) -> tuple[str, _Rings]:
    """Check types and nesting, count vertices, and read every ring into an array."""
    if not isinstance(obj, Mapping):
        raise GeometryError(
            "wrong_type",
            f"expected a GeoJSON geometry object, got {type(obj).__name__}",
            feature=feature,
        )
    geometry_type = obj.get("type")
    if geometry_type not in ("Polygon", "MultiPolygon"):
        raise GeometryError(
            "wrong_type",
            f"expected a Polygon or MultiPolygon, got type {geometry_type!r}",
            feature=feature,
        )
    coordinates = obj.get("coordinates")
    if not _is_array(coordinates):
        raise GeometryError(
            "wrong_type", f"{geometry_type} has no coordinates array", feature=feature
        )
    multi = geometry_type == "MultiPolygon"
    polygons: Sequence[Any] = coordinates if multi else [coordinates]
    if not polygons:
        raise GeometryError("empty", f"{geometry_type} has no coordinates", feature=feature)
    rings = _Rings(multi)

    # Count first: the limit exists to bound the work done on hostile or mistaken input.
    total = 0
    for p, polygon in enumerate(polygons):
        if not _is_array(polygon):
            raise GeometryError(
                "wrong_type", f"polygon {p} is not an array of rings", feature=feature
            )
        if not polygon:
            where = f"polygon {p}" if multi else geometry_type
            raise GeometryError("empty", f"{where} has no rings", feature=feature)
        for r, ring in enumerate(polygon):
            if not _is_array(ring):
                raise GeometryError(
                    "wrong_type",
                    f"{rings.where(p, r)} is not an array of positions",
                    feature=feature,
                )
            total += len(ring)
    if total > max_vertices:
        raise GeometryError(
            "too_many_vertices",
            f"{total} vertices, more than the limit of {max_vertices}",
            feature=feature,
        )

    for p, polygon in enumerate(polygons):
        arrays: list[NDArray[np.float64]] = []
        for r, ring in enumerate(polygon):
            has_altitude = False
            for i, position in enumerate(ring):
                # Fast path for the usual [lon, lat] of plain floats; this loop is most of
                # the cost of reading a large boundary.
                kind = type(position)
                if (kind is list or kind is tuple) and len(position) == 2:
                    lon, lat = position
                    if type(lon) in _PLAIN_NUMBERS and type(lat) in _PLAIN_NUMBERS:
                        continue
                if not (
                    _is_array(position)
                    and len(position) in (2, 3)
                    and all(_is_number(v) for v in position)
                ):
                    raise GeometryError(
                        "wrong_type",
                        f"{rings.where(p, r, i)} is {position!r}, not [lon, lat] numbers",
                        feature=feature,
                    )
                has_altitude = has_altitude or len(position) == 3
            # A third (altitude) value is allowed by GeoJSON and ignored here.
            rows = [position[:2] for position in ring] if has_altitude else ring
            arrays.append(np.array(rows, dtype=np.float64).reshape(-1, 2))
        rings.polygons.append(arrays)
    return geometry_type, rings


def _check_coordinates(rings: _Rings, feature: str | None) -> None:
    """Check finiteness, ranges and the lat/lon order of every position."""
    positions = rings.all_positions()
    if len(positions) == 0:
        return  # only empty rings: _check_rings names them
    lon = positions[:, 0]
    lat = positions[:, 1]
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        index = int(np.argmin(finite))
        raise GeometryError(
            "not_finite",
            f"{rings.locate(index)} is {positions[index].tolist()}",
            feature=feature,
        )
    in_range = (np.abs(lon) <= 180.0) & (np.abs(lat) <= 90.0)
    valid_if_swapped = (np.abs(lat) <= 180.0) & (np.abs(lon) <= 90.0)
    if not in_range.all():
        index = int(np.argmin(in_range))
        where = f"{rings.locate(index)} is {positions[index].tolist()}"
        if valid_if_swapped.all():
            raise GeometryError(
                "lat_lon_swapped",
                f"{where}: latitude out of range; positions must be [lon, lat]",
                feature=feature,
            )
        raise GeometryError(
            "coordinates_out_of_range",
            f"{where}: need -180 <= lon <= 180 and -90 <= lat <= 90",
            feature=feature,
        )
    # Values in range can still be swapped: [39.9, 80.1] read as [lon, lat] is in the Arctic,
    # read as [lat, lon] it is in Xinjiang. This service supervises people in China, so a
    # geometry wholly outside China that lies wholly inside it once swapped is a swap.
    if out_of_china(lon, lat).all() and not out_of_china(lat, lon).any():
        raise GeometryError(
            "lat_lon_swapped",
            f"every position is outside China as [lon, lat] and inside it as [lat, lon], "
            f"e.g. {rings.locate(0)} is {positions[0].tolist()}",
            feature=feature,
        )


def _check_rings(rings: _Rings, feature: str | None) -> None:
    """Check that every ring has at least four positions and ends where it starts."""
    for p, polygon in enumerate(rings.polygons):
        for r, ring in enumerate(polygon):
            if len(ring) < 4:
                raise GeometryError(
                    "degenerate_ring",
                    f"{rings.where(p, r)} has {len(ring)} positions; a ring needs at least 4 "
                    "(a triangle plus the closing position)",
                    feature=feature,
                )
            if not np.array_equal(ring[0], ring[-1]):
                raise GeometryError(
                    "unclosed_ring",
                    f"{rings.where(p, r)} starts at {ring[0].tolist()} but ends at "
                    f"{ring[-1].tolist()}",
                    feature=feature,
                )


def _polygonal_parts(geometry: Any) -> Polygon | MultiPolygon | None:
    """Keep only the polygonal parts of a geometry; None when there are none."""
    if isinstance(geometry, Polygon | MultiPolygon):
        return None if geometry.is_empty else geometry
    parts = [
        part
        for part in shapely.get_parts(geometry)
        if isinstance(part, Polygon | MultiPolygon) and not part.is_empty
    ]
    if not parts:
        return None
    kept: Polygon | MultiPolygon = shapely.union_all(parts)
    return kept


def _ensure_valid(
    geometry: Polygon | MultiPolygon,
    *,
    repair: bool,
    stage: str,
    feature: str | None,
    repairs: list[str],
    max_area_change: float | None = None,
) -> Polygon | MultiPolygon:
    """Return ``geometry`` if valid; repair it (and record how) or raise otherwise.

    With ``max_area_change``, a repair is accepted only when it changes the area by at most
    that fraction (a numerical artefact, such as a boundary touching itself); otherwise, and
    when the change cannot be measured (a bow-tie's signed area is zero), it is refused.
    """
    reason = str(shapely.is_valid_reason(geometry))
    if reason == "Valid Geometry":
        return geometry
    problem = next(
        (slug for prefix, slug in _VALIDITY_PROBLEMS if reason.startswith(prefix)),
        "invalid_geometry",
    )
    detail = f"{reason} {stage}"
    if not repair:
        raise GeometryError(problem, detail, feature=feature)
    # "structure" treats rings as area boundaries (shells add, holes subtract), which is what
    # a fence means; collapsed lines and points carry no area and are dropped.
    fixed = _polygonal_parts(shapely.make_valid(geometry, method="structure", keep_collapsed=False))
    if fixed is None:
        raise GeometryError(problem, f"{detail}; repair left no area", feature=feature)
    parts = len(shapely.get_parts(fixed))
    # The signed-ring area of an invalid polygon is still a fair yardstick for how much the
    # repair changed; a bow-tie's cancels out to zero, so it gets no figure.
    change = f", area {fixed.area / geometry.area - 1.0:+.3%}" if geometry.area > 0 else ""
    if max_area_change is not None and (
        geometry.area <= 0 or abs(fixed.area / geometry.area - 1.0) > max_area_change
    ):
        raise GeometryError(
            problem,
            f"{detail}; a repair would change the shape (area{change or ' not measurable'}), "
            "so it is not made without an explicit request",
            feature=feature,
        )
    repairs.append(f"{problem}: {detail}; rebuilt with make_valid into {parts} polygon(s){change}")
    return fixed


def parse_geometry(
    obj: Mapping[str, Any],
    *,
    crs: CRS | str = CRS.WGS84,
    max_vertices: int = DEFAULT_MAX_VERTICES,
    repair: bool = False,
    feature: str | None = None,
    max_repair_area_change: float | None = None,
) -> ParsedGeometry:
    """Validate a GeoJSON Polygon or MultiPolygon and build it in WGS-84.

    Checks run on the raw coordinates before any geometry is built, in this order:
    types and nesting (``"wrong_type"``, ``"empty"``), the vertex limit
    (``"too_many_vertices"``), finite numbers (``"not_finite"``), ranges
    (``"coordinates_out_of_range"``, or ``"lat_lon_swapped"`` when the positions read as
    [lat, lon] would be valid, or would be in China while as given they are not),
    ring sizes (``"degenerate_ring"``) and closure (``"unclosed_ring"``). The built geometry
    must then be valid (``"self_intersection"``, ``"hole_outside_shell"``, ...), both in
    ``crs`` and after conversion to WGS-84. Holes are kept.

    Parameters
    ----------
    obj : Mapping
        A GeoJSON geometry object (``type`` and ``coordinates``), positions [lon, lat].
    crs : CRS or str, default CRS.WGS84
        The system the coordinates are in.
    max_vertices : int, default 200000
        The most positions accepted, counting every ring.
    repair : bool, default False
        Fix an invalid geometry with ``shapely.make_valid`` (keeping only its polygonal
        parts) instead of rejecting it; each fix is reported in ``repairs``. Structural and
        coordinate problems are never repaired.
    max_repair_area_change : float or None, default None
        With ``repair``, accept only repairs that change the area by at most this fraction
        (numerical artefacts of real boundary data); others raise as if ``repair`` were off.
    feature : str or None
        Names the feature in error messages (an adcode and name, or an index).

    Returns
    -------
    ParsedGeometry
        The valid geometry in WGS-84 and the repairs made.

    Raises
    ------
    GeometryError
        With ``problem`` set to the slug of the first problem found.

    Examples
    --------
    >>> square = {"type": "Polygon", "coordinates": [[[116.3, 39.9], [116.4, 39.9],
    ...     [116.4, 40.0], [116.3, 40.0], [116.3, 39.9]]]}
    >>> parsed = parse_geometry(square, crs=CRS.GCJ02)
    >>> parsed.geometry.geom_type, parsed.repairs
    ('Polygon', ())
    >>> [round(v, 4) for v in parsed.geometry.exterior.coords[0]]
    [116.2939, 39.8987]
    >>> bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    >>> parse_geometry(bowtie)
    Traceback (most recent call last):
    ...
    geofences.errors.GeometryError: self_intersection: Self-intersection[0.5 0.5] in wgs84
    >>> parse_geometry(bowtie, repair=True).geometry.geom_type
    'MultiPolygon'
    """
    source = CRS(crs)
    geometry_type, rings = _read_structure(obj, max_vertices, feature)
    _check_coordinates(rings, feature)
    _check_rings(rings, feature)

    polygons = [Polygon(shell, holes) for shell, *holes in rings.polygons]
    built: Polygon | MultiPolygon = (
        MultiPolygon(polygons) if geometry_type == "MultiPolygon" else polygons[0]
    )
    repairs: list[str] = []
    built = _ensure_valid(
        built,
        repair=repair,
        stage=f"in {source}",
        feature=feature,
        repairs=repairs,
        max_area_change=max_repair_area_change,
    )
    if source != CRS.WGS84:
        # The offsets vary smoothly, but two nearly touching edges can still cross.
        built = _ensure_valid(
            transform_geometry(built, source, CRS.WGS84),
            repair=repair,
            stage=f"after conversion from {source} to wgs84",
            feature=feature,
            repairs=repairs,
            max_area_change=max_repair_area_change,
        )
    return ParsedGeometry(built, tuple(repairs))


def _adcode_of(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def parse_datav(
    fc: Mapping[str, Any],
    *,
    crs: CRS | str = CRS.GCJ02,
    max_vertices: int = DEFAULT_MAX_VERTICES,
    repair: bool = False,
    max_repair_area_change: float | None = None,
) -> list[AdminArea]:
    """Import the administrative areas of a DataV.GeoAtlas FeatureCollection.

    Parameters
    ----------
    fc : Mapping
        A GeoJSON FeatureCollection whose features carry DataV properties: ``adcode``
        (int or str, required), ``name``, ``level`` and ``parent`` (``{"adcode": ...}``).
    crs : CRS or str, default CRS.GCJ02
        The system of the coordinates; DataV publishes GCJ-02.
    max_vertices : int, default 200000
        The most positions accepted per feature.
    repair : bool, default False
        Passed to :func:`parse_geometry` for every feature; the repairs made are kept in
        each area's ``repairs``. DataV's simplified files do contain self-intersections
        (顺义区 in the Beijing file, for one).

    Returns
    -------
    list of AdminArea
        One per feature, in file order, with boundaries in WGS-84.

    Raises
    ------
    GeometryError
        For the first feature that cannot be imported, named by adcode and name (or by
        index when it has no adcode: ``"missing_property"``). Two features with one adcode
        raise ``"duplicate_adcode"``.

    Examples
    --------
    >>> ring = [[116.3, 39.9], [116.4, 39.9], [116.4, 40.0], [116.3, 39.9]]
    >>> fc = {"type": "FeatureCollection", "features": [{"type": "Feature",
    ...     "properties": {"adcode": 110108, "name": "海淀区", "level": "district",
    ...                    "parent": {"adcode": 110000}},
    ...     "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]}}]}
    >>> [(a.adcode, a.name, a.parent_adcode, a.geometry.geom_type) for a in parse_datav(fc)]
    [('110108', '海淀区', '110000', 'MultiPolygon')]
    """
    if not isinstance(fc, Mapping) or fc.get("type") != "FeatureCollection":
        raise GeometryError("wrong_type", "expected a GeoJSON FeatureCollection")
    features = fc.get("features")
    if not _is_array(features):
        raise GeometryError("wrong_type", "the FeatureCollection has no features array")
    areas: list[AdminArea] = []
    seen: set[str] = set()
    for index, item in enumerate(features):
        if not isinstance(item, Mapping):
            raise GeometryError("wrong_type", "not a GeoJSON Feature", feature=f"#{index}")
        properties = item.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        raw_name = properties.get("name")
        name = raw_name if isinstance(raw_name, str) and raw_name else None
        adcode = _adcode_of(properties.get("adcode"))
        if adcode is None:
            label = f"#{index}" + (f" {name}" if name else "")
            raise GeometryError(
                "missing_property",
                f"no usable adcode (got {properties.get('adcode')!r})",
                feature=label,
            )
        label = f"{adcode} {name}" if name else adcode
        if adcode in seen:
            raise GeometryError(
                "duplicate_adcode", "another feature has the same adcode", feature=label
            )
        seen.add(adcode)
        geometry = item.get("geometry")
        if geometry is None:
            raise GeometryError("missing_property", "the feature has no geometry", feature=label)
        parent = properties.get("parent")
        parent_adcode = _adcode_of(parent.get("adcode")) if isinstance(parent, Mapping) else None
        level = properties.get("level")
        parsed = parse_geometry(
            geometry,
            crs=crs,
            max_vertices=max_vertices,
            repair=repair,
            feature=label,
            max_repair_area_change=max_repair_area_change,
        )
        areas.append(
            AdminArea(
                adcode=adcode,
                name=name,
                parent_adcode=parent_adcode,
                level=level if isinstance(level, str) and level else None,
                geometry=parsed.geometry,
                repairs=parsed.repairs,
            )
        )
    return areas


def _prefix_of(code: str) -> str | None:
    """The adcode prefix shared by everything under a province or city code."""
    if len(code) != 6 or not code.isdigit():
        return None
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return None


def resolve_adcodes(areas: Mapping[str, AdminArea], codes: Iterable[str]) -> list[str]:
    """Expand adcodes to the imported leaf areas they stand for.

    An imported area with imported children (by ``parent_adcode``, recursively) stands for
    all its leaf descendants. A code that was not imported stands for the imported areas that
    name it as their parent (DataV's ``parent.adcode``), or, when none does, for a province
    (``"xx0000"``) or city (``"xxxx00"``) code, every imported area under it by adcode
    prefix. So a city's code covers all its districts, and moving between them is not
    leaving it.

    Parameters
    ----------
    max_repair_area_change : float or None, default None
        Passed to :func:`parse_geometry`: with ``repair``, only repairs changing an area by at
        most this fraction are made.
    areas : Mapping of str to AdminArea
        The imported areas, keyed by adcode.
    codes : iterable of str
        The adcodes asked for.

    Returns
    -------
    list of str
        The adcodes of the leaf areas, sorted, each once.

    Raises
    ------
    UnknownAdcodeError
        For a code that is neither imported nor a province or city code with imported
        areas under it.

    Examples
    --------
    >>> from shapely import box
    >>> areas = {c: AdminArea(c, None, "110000", "district", box(0, 0, 1, 1))
    ...          for c in ("110101", "110102")}
    >>> resolve_adcodes(areas, ["110100"])
    ['110101', '110102']
    >>> try:
    ...     resolve_adcodes(areas, ["120000"])
    ... except UnknownAdcodeError as err:
    ...     print("unknown:", err.code)
    unknown: 120000
    """
    children: defaultdict[str, list[str]] = defaultdict(list)
    orphans: defaultdict[str, list[str]] = defaultdict(list)  # children of unimported parents
    for adcode, area in areas.items():
        parent = area.parent_adcode
        if parent is not None and parent != adcode:
            (children if parent in areas else orphans)[parent].append(adcode)

    leaves: set[str] = set()
    for raw in codes:
        code = str(raw).strip()
        if code in areas:
            roots = [code]
        elif code in orphans:
            roots = orphans[code]
        else:
            prefix = _prefix_of(code)
            roots = [] if prefix is None else [c for c in areas if c.startswith(prefix)]
            if not roots:
                raise UnknownAdcodeError(code)
        for root in roots:
            leaves.update(_leaves_under(root, children))
    return sorted(leaves)


def _leaves_under(root: str, children: Mapping[str, list[str]]) -> set[str]:
    """The leaf descendants of ``root``, or ``root`` itself when it has none."""
    # The visited set guards against parent cycles in malformed input; an area whose
    # descendants only lead back to it then stands for itself.
    stack = [root]
    visited: set[str] = set()
    found: set[str] = set()
    while stack:
        current = stack.pop()
        if current in visited:
            continue
        visited.add(current)
        below = children.get(current)
        if below:
            stack.extend(below)
        else:
            found.add(current)
    return found or {root}


def union_areas(areas: Mapping[str, AdminArea], codes: Iterable[str]) -> Polygon | MultiPolygon:
    """Union the boundaries of the areas some adcodes stand for.

    Parameters
    ----------
    areas : Mapping of str to AdminArea
        The imported areas, keyed by adcode.
    codes : iterable of str
        The adcodes asked for, resolved by :func:`resolve_adcodes`.

    Returns
    -------
    shapely.Polygon or shapely.MultiPolygon
        The union in WGS-84 (lon, lat) degrees.

    Raises
    ------
    UnknownAdcodeError
        For a code that cannot be resolved.
    GeometryError
        ``"empty"`` when no codes are given.

    Examples
    --------
    >>> from shapely import box
    >>> areas = {"110101": AdminArea("110101", None, "110000", "district", box(0, 0, 1, 1)),
    ...          "110102": AdminArea("110102", None, "110000", "district", box(1, 0, 2, 1))}
    >>> union_areas(areas, ["110000"]).area
    2.0
    """
    leaves = resolve_adcodes(areas, codes)
    if not leaves:
        raise GeometryError("empty", "no adcodes given")
    union = _polygonal_parts(shapely.union_all([areas[code].geometry for code in leaves]))
    if union is None:
        raise GeometryError("empty", f"the areas {', '.join(leaves)} have no area")
    return union
