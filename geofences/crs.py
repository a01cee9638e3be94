"""Conversions between the three coordinate systems phones and Chinese map data use.

* WGS-84 (``wgs84``): raw GPS, and the only system the rest of the kernel works in.
* GCJ-02 (``gcj02``, 国测局坐标, "Mars coordinates"): the obfuscated system every map
  published in China must use; AMap and Tencent SDKs report it, DataV boundaries are in it.
* BD-09 (``bd09``): Baidu's further offset of GCJ-02, reported by the Baidu SDK.

The offsets are a few hundred metres, larger than most fences' margins, so every coordinate
is converted to WGS-84 on the way in. The formulas are the de-facto public ones
(Krasovsky ellipsoid constants, Baidu's ``x_pi``); like every implementation of them, a point
is treated as outside China, and passed through unchanged, by a rectangle test.

All functions take and return ``(lon, lat)`` in degrees, in that order, and work on numpy
arrays of any shape (Python floats give 0-d arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CRS",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "convert",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "out_of_china",
    "to_wgs84",
    "transform_geometry",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

FloatArray = NDArray[np.float64]
_G = TypeVar("_G", bound=shapely.Geometry)


class CRS(StrEnum):
    """A coordinate reference system a position or a boundary can be given in.

    Examples
    --------
    >>> CRS("gcj02") is CRS.GCJ02
    True
    """

    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    BD09 = "bd09"


# Krasovsky 1940 ellipsoid: semi-major axis (metres) and first eccentricity squared, as used
# by the published GCJ-02 formula.
_A = 6378245.0
_EE = 0.00669342162296594323
# Baidu's constant for the BD-09 rotation and scaling.
_X_PI = math.pi * 3000.0 / 180.0

# The rectangle that every public implementation uses to decide "in China".
_CHINA_MIN_LON = 72.004
_CHINA_MAX_LON = 137.8347
_CHINA_MIN_LAT = 0.8293
_CHINA_MAX_LAT = 55.8271

# The exact GCJ-02 inverse is a fixed-point iteration; the offset changes by well under 1 %
# per degree, so each step shrinks the error by two orders of magnitude and a handful of
# steps reach the tolerance. The cap is a guard, never reached inside China.
_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_STEPS = 20


def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return x, y


def out_of_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Tell which positions lie outside the rectangle where the Chinese offsets apply.

    Parameters
    ----------
    lon, lat : array_like
        Longitude and latitude in degrees.

    Returns
    -------
    numpy.ndarray of bool
        True where the position is outside 72.004–137.8347 °E, 0.8293–55.8271 °N (NaN
        counts as outside); such positions pass through every transform of this module
        unchanged.

    Examples
    --------
    >>> out_of_china([116.4, -104.99], [39.9, 39.74]).tolist()
    [False, True]
    """
    x, y = _as_arrays(lon, lat)
    # Written as "not inside" so that NaN counts as outside and passes through untouched.
    inside: NDArray[np.bool_] = (
        (x >= _CHINA_MIN_LON)
        & (x <= _CHINA_MAX_LON)
        & (y >= _CHINA_MIN_LAT)
        & (y <= _CHINA_MAX_LAT)
    )
    return ~inside


def _split(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], FloatArray, FloatArray]:
    """Return the inputs, the out-of-China mask, and inputs safe to feed the formulas.

    Positions outside China are replaced by a point inside it before any formula runs: the
    formulas overflow near the poles and warn on infinities, and the results there are
    discarded anyway.
    """
    x, y = _as_arrays(lon, lat)
    outside = out_of_china(x, y)
    if outside.any():
        return x, y, outside, np.where(outside, 105.0, x), np.where(outside, 35.0, y)
    return x, y, outside, x, y


def _gcj02_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 minus WGS-84 at a WGS-84 position, in degrees, with no China test."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    # The two series share their first periodic term.
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    d_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
    d_lat += common
    d_lat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    d_lat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    d_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
    d_lon += common
    d_lon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    d_lon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    # The series are in metres on the Krasovsky ellipsoid; scale them to degrees.
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    d_lon = (d_lon * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return d_lon, d_lat


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 positions to GCJ-02.

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitude and latitude in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        GCJ-02 ``(lon, lat)`` in degrees, float64, in the broadcast shape of the inputs.
        Positions outside China are returned unchanged.

    Examples
    --------
    >>> lon, lat = wgs84_to_gcj02(116.404, 39.915)
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.410244, 39.916404)
    """
    x, y, outside, safe_x, safe_y = _split(lon, lat)
    d_lon, d_lat = _gcj02_offset(safe_x, safe_y)
    return np.where(outside, x, safe_x + d_lon), np.where(outside, y, safe_y + d_lat)


def gcj02_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, exact: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Convert GCJ-02 positions to WGS-84.

    GCJ-02 has no closed-form inverse. The exact inverse solves
    ``wgs84_to_gcj02(w) == g`` by fixed-point iteration to better than 1e-9 degrees
    (about 0.1 mm); the one-step approximation ``w = g - offset(g)`` used by many libraries
    is off by up to a few metres.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitude and latitude in degrees.
    exact : bool, default True
        Iterate to convergence; False gives the one-step approximation.

    Returns
    -------
    tuple of numpy.ndarray
        WGS-84 ``(lon, lat)`` in degrees, float64. Positions outside China are unchanged.

    Examples
    --------
    >>> lon, lat = gcj02_to_wgs84(116.41024449916938, 39.91640428150164)
    >>> round(float(lon), 9), round(float(lat), 9)
    (116.404, 39.915)
    """
    x, y, outside, g_lon, g_lat = _split(lon, lat)
    d_lon, d_lat = _gcj02_offset(g_lon, g_lat)
    w_lon = g_lon - d_lon
    w_lat = g_lat - d_lat
    if exact:
        for _ in range(_INVERSE_MAX_STEPS):
            d_lon, d_lat = _gcj02_offset(w_lon, w_lat)
            r_lon = w_lon + d_lon - g_lon
            r_lat = w_lat + d_lat - g_lat
            w_lon = w_lon - r_lon
            w_lat = w_lat - r_lat
            residual = np.maximum(np.abs(r_lon), np.abs(r_lat))
            if not np.any(residual > _INVERSE_TOLERANCE_DEG):
                break
    return np.where(outside, x, w_lon), np.where(outside, y, w_lat)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert GCJ-02 positions to BD-09.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitude and latitude in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        BD-09 ``(lon, lat)`` in degrees, float64. Positions outside China are unchanged.

    Examples
    --------
    >>> lon, lat = gcj02_to_bd09(116.404, 39.915)
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.410369, 39.921337)
    """
    g_lon, g_lat, outside, x, y = _split(lon, lat)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    bd_lon = z * np.cos(theta) + 0.0065
    bd_lat = z * np.sin(theta) + 0.006
    return np.where(outside, g_lon, bd_lon), np.where(outside, g_lat, bd_lat)


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert BD-09 positions to GCJ-02.

    This is Baidu's published one-step inverse; it undoes :func:`gcj02_to_bd09` to within
    about 2e-6 degrees (0.25 m), far below GPS noise.

    Parameters
    ----------
    lon, lat : array_like
        BD-09 longitude and latitude in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        GCJ-02 ``(lon, lat)`` in degrees, float64. Positions outside China are unchanged.

    Examples
    --------
    >>> lon, lat = bd09_to_gcj02(116.404, 39.915)
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.397627, 39.908657)
    """
    b_lon, b_lat, outside, safe_lon, safe_lat = _split(lon, lat)
    x = safe_lon - 0.0065
    y = safe_lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return np.where(outside, b_lon, z * np.cos(theta)), np.where(outside, b_lat, z * np.sin(theta))


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 positions to BD-09 (through GCJ-02).

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitude and latitude in degrees.

    Returns
    -------
    tuple of numpy.ndarray
        BD-09 ``(lon, lat)`` in degrees, float64. Positions outside China are unchanged.

    Examples
    --------
    >>> lon, lat = wgs84_to_bd09(116.404, 39.915)
    >>> round(float(lon), 5), round(float(lat), 5)
    (116.41663, 39.9227)
    """
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(
    lon: ArrayLike, lat: ArrayLike, *, exact: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Convert BD-09 positions to WGS-84 (through GCJ-02).

    Parameters
    ----------
    lon, lat : array_like
        BD-09 longitude and latitude in degrees.
    exact : bool, default True
        Use the exact GCJ-02 inverse (see :func:`gcj02_to_wgs84`).

    Returns
    -------
    tuple of numpy.ndarray
        WGS-84 ``(lon, lat)`` in degrees, float64. Positions outside China are unchanged.

    Examples
    --------
    >>> lon, lat = bd09_to_wgs84(116.41662724, 39.92269955)
    >>> round(float(lon), 5), round(float(lat), 5)
    (116.404, 39.915)
    """
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat), exact=exact)


def to_wgs84(lon: ArrayLike, lat: ArrayLike, crs: CRS | str) -> tuple[FloatArray, FloatArray]:
    """Convert positions given in ``crs`` to WGS-84 (exact inverses).

    Parameters
    ----------
    lon, lat : array_like
        Longitude and latitude in degrees, in ``crs``.
    crs : CRS or str
        The system the positions are in (``"wgs84"``, ``"gcj02"`` or ``"bd09"``).

    Returns
    -------
    tuple of numpy.ndarray
        WGS-84 ``(lon, lat)`` in degrees, float64.

    Examples
    --------
    >>> lon, lat = to_wgs84([116.41024449916938], [39.91640428150164], CRS.GCJ02)
    >>> lon.round(6).tolist(), lat.round(6).tolist()
    ([116.404], [39.915])
    """
    return convert(lon, lat, crs, CRS.WGS84)


def from_wgs84(lon: ArrayLike, lat: ArrayLike, crs: CRS | str) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 positions to ``crs``.

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitude and latitude in degrees.
    crs : CRS or str
        The system wanted.

    Returns
    -------
    tuple of numpy.ndarray
        ``(lon, lat)`` in degrees in ``crs``, float64.

    Examples
    --------
    >>> lon, lat = from_wgs84(116.404, 39.915, "gcj02")
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.410244, 39.916404)
    """
    return convert(lon, lat, CRS.WGS84, crs)


_FROM_WGS84: dict[CRS, Callable[[ArrayLike, ArrayLike], tuple[FloatArray, FloatArray]]] = {
    CRS.WGS84: _as_arrays,
    CRS.GCJ02: wgs84_to_gcj02,
    CRS.BD09: wgs84_to_bd09,
}
_TO_WGS84: dict[CRS, Callable[[ArrayLike, ArrayLike], tuple[FloatArray, FloatArray]]] = {
    CRS.WGS84: _as_arrays,
    CRS.GCJ02: gcj02_to_wgs84,
    CRS.BD09: bd09_to_wgs84,
}


def convert(
    lon: ArrayLike, lat: ArrayLike, src: CRS | str, dst: CRS | str
) -> tuple[FloatArray, FloatArray]:
    """Convert positions from ``src`` to ``dst``.

    GCJ-02 and BD-09 convert directly into each other; every other pair goes through
    WGS-84 with the exact GCJ-02 inverse. Converting to the same system returns float64
    copies of the input.

    Parameters
    ----------
    lon, lat : array_like
        Longitude and latitude in degrees, in ``src``.
    src, dst : CRS or str
        Source and destination systems.

    Returns
    -------
    tuple of numpy.ndarray
        ``(lon, lat)`` in degrees in ``dst``, float64, in the broadcast shape of the inputs.

    Raises
    ------
    ValueError
        If ``src`` or ``dst`` is not a known system.

    Examples
    --------
    >>> lon, lat = convert(116.404, 39.915, "gcj02", "bd09")
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.410369, 39.921337)
    """
    source = CRS(src)
    target = CRS(dst)
    if source == target:
        x, y = _as_arrays(lon, lat)
        return x.copy(), y.copy()
    if source == CRS.GCJ02 and target == CRS.BD09:
        return gcj02_to_bd09(lon, lat)
    if source == CRS.BD09 and target == CRS.GCJ02:
        return bd09_to_gcj02(lon, lat)
    return _FROM_WGS84[target](*_TO_WGS84[source](lon, lat))


def transform_geometry(geom: _G, src: CRS | str, dst: CRS | str) -> _G:
    """Convert every vertex of a shapely geometry from ``src`` to ``dst``.

    The geometry keeps its type, its parts and its holes; only coordinates change. Z values,
    if any, are dropped (positions are 2-D throughout the kernel).

    Parameters
    ----------
    geom : shapely.Geometry
        Any shapely geometry in ``src``.
    src, dst : CRS or str
        Source and destination systems.

    Returns
    -------
    shapely.Geometry
        A new geometry of the same type in ``dst``; ``geom`` itself when the systems are equal.

    Examples
    --------
    >>> from shapely import Polygon
    >>> square = Polygon([(116.0, 39.0), (116.1, 39.0), (116.1, 39.1), (116.0, 39.0)])
    >>> moved = transform_geometry(square, CRS.WGS84, CRS.GCJ02)
    >>> moved.geom_type, len(moved.exterior.coords)
    ('Polygon', 4)
    >>> [round(v, 5) for v in moved.exterior.coords[0]]
    [116.00602, 39.00089]
    """
    source = CRS(src)
    target = CRS(dst)
    if source == target:
        return geom

    def vectorised(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        return convert(x, y, source, target)

    result: Any = shapely.transform(geom, vectorised, interleaved=False)
    moved: _G = result
    return moved
