"""The subject's own rules as its app draws them: fences as GeoJSON geometries (WGS-84).

A circle fence is stored as a centre and a radius; GeoJSON has no circle, so the app gets a
polygon through points at the radius's distance on the sphere, close enough to draw (the
fence evaluation itself still uses the exact circle). This module is pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from correction_monitor.policy import CheckinWindow

EARTH_RADIUS_M = 6_371_008.8
"""The mean Earth radius (IUGG), the sphere the circle is drawn on."""

CIRCLE_VERTICES = 64
"""Points on a drawn circle: a 150 m home circle is off by under 0.2 m between them."""


def destination(
    lon: float, lat: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """The point ``distance_m`` from (``lon``, ``lat``) on the sphere along ``bearing_deg``
    (clockwise from north), in degrees.

    >>> lon, lat = destination(116.3, 39.9, 0.0, 1000.0)
    >>> round(lon, 6), round((lat - 39.9) * 111_195, 1)
    (116.3, 1000.0)
    """
    phi1, lam1 = math.radians(lat), math.radians(lon)
    theta, delta = math.radians(bearing_deg), distance_m / EARTH_RADIUS_M
    phi2 = math.asin(
        math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * math.sin(phi2),
    )
    return (math.degrees(lam2) + 540.0) % 360.0 - 180.0, math.degrees(phi2)


def circle_polygon(
    lon: float, lat: float, radius_m: float, vertices: int = CIRCLE_VERTICES
) -> dict[str, Any]:
    """A GeoJSON Polygon through ``vertices`` points at ``radius_m`` around the centre,
    counter-clockwise (RFC 7946's exterior ring order), closed.

    >>> ring = circle_polygon(116.3, 39.9, 150.0)["coordinates"][0]
    >>> len(ring), ring[0] == ring[-1]
    (65, True)
    """
    ring = [
        [round(x, 7) for x in destination(lon, lat, -360.0 * k / vertices, radius_m)]
        for k in range(vertices)
    ]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def as_multipolygon(geometry: dict[str, Any]) -> dict[str, Any]:
    """A Polygon as the one-part MultiPolygon it is; other geometries as they are.

    >>> as_multipolygon({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1], [0, 0]]]})
    {'type': 'MultiPolygon', 'coordinates': [[[[0, 0], [1, 0], [0, 1], [0, 0]]]]}
    """
    if geometry.get("type") == "Polygon":
        return {"type": "MultiPolygon", "coordinates": [geometry["coordinates"]]}
    return geometry


def windows_json(windows: Iterable[CheckinWindow]) -> list[dict[str, Any]]:
    """Check-in windows as the API writes them: ``{"days": [1..7], "start", "end"}``."""
    return [
        {"days": sorted(w.days), "start": w.start.strftime("%H:%M"), "end": w.end.strftime("%H:%M")}
        for w in windows
    ]


def stored_windows_json(stored: Sequence[Any]) -> list[dict[str, Any]]:
    """A subject's own windows as stored, in the same shape (entries that are not windows are
    left out rather than shown wrong)."""
    return [
        {"days": sorted(w["days"]), "start": w["start"], "end": w["end"]}
        for w in stored
        if isinstance(w, dict)
        and isinstance(w.get("days"), list)
        and isinstance(w.get("start"), str)
        and isinstance(w.get("end"), str)
    ]
