"""The geometry kernel of correction-monitor: pure functions, no I/O."""

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
from geofences.errors import GeometryError, UnknownAdcodeError
from geofences.geojson import (
    AdminArea,
    ParsedGeometry,
    parse_datav,
    parse_geometry,
    resolve_adcodes,
    union_areas,
)

__all__ = [
    "CRS",
    "AdminArea",
    "GeometryError",
    "ParsedGeometry",
    "UnknownAdcodeError",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "convert",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "out_of_china",
    "parse_datav",
    "parse_geometry",
    "resolve_adcodes",
    "to_wgs84",
    "transform_geometry",
    "union_areas",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]
