"""Accuracy-aware classification of fixes against an area, vectorised.

A fix is a disc: its position plus an accuracy radius in metres. :func:`classify` says
``INSIDE`` only when the whole disc is inside the area, ``OUTSIDE`` only when the whole disc is
outside, and ``UNCERTAIN`` otherwise (a disc touching the boundary is uncertain).

How metres stay correct anywhere
--------------------------------
A polygon area is projected once with an equirectangular projection about its centre,
``x = (lon - lon0) * kx``, ``y = (lat - lat0) * ky``, where ``kx`` and ``ky`` are the WGS-84
ellipsoid's metres per degree of longitude and latitude at the centre. The projection is affine in
(lon, lat), so polygon edges (straight in lon/lat, as GeoJSON and DataV draw them) stay straight
and point-in-polygon answers are exactly those of the unprojected polygon. Only lengths are
distorted, by the factors ``sx(φ) = kx / (N(φ) cos φ · π/180)`` east-west and
``sy(φ) = ky / (M(φ) · π/180)`` north-south (``N``, ``M``: prime-vertical and meridian radii). A
geodesic disc of radius ``r`` about a fix at latitude ``φ`` never leaves the latitude band
``φ ± r / M(0)``, and a path of ``r`` metres maps to at most ``r · kmax`` projected units, where
``kmax`` is the largest of ``sx`` and ``sy`` over that band. So the geodesic disc lies within the
projected circle of radius ``r · kmax``: if that circle is wholly inside (or wholly outside) the
projected polygon, so is the disc. The answer is therefore never wrong, only slightly more often
``UNCERTAIN`` than an exact geodesic test (by the scale spread across one disc, a few parts in
10^4 for ordinary accuracies, at most ~4 % of the radius for a county 300 km tall at 50° N).

How it is fast
--------------
Each area carries a raster over its projected bounding box. Every cell within a few cells of
the boundary is marked; every other cell stores its Chebyshev distance ``k`` (in cells, capped)
to the nearest marked cell, signed by inside/outside. Any point of such a cell is at least
``(k - 1.125) · cell`` from the boundary, so most fixes are decided by one array lookup; only
fixes near the boundary (or with a radius larger than the stored clearance) take the exact path:
``shapely.contains_xy`` on the prepared projected polygon plus a prepared ``dwithin`` against its
boundary.

Circles are geodesic: a disc of radius ``r`` at geodesic distance ``d`` from the centre of a
circle of radius ``R`` is inside when ``d + r <= R`` and outside when ``d > R + r``; distances use
Vincenty's inverse formula on WGS-84, after a spherical prefilter for far fixes.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
import shapely

from geofences.model import Circle, Membership

__all__ = [
    "PreparedArea",
    "classify",
    "distance_outside_m",
    "geodesic_distance_m",
]

FloatArray = npt.NDArray[np.float64]
Int8Array = npt.NDArray[np.int8]

# WGS-84 ellipsoid.
WGS84_A: Final = 6_378_137.0
WGS84_F: Final = 1 / 298.257223563
WGS84_B: Final = WGS84_A * (1 - WGS84_F)
WGS84_E2: Final = WGS84_F * (2 - WGS84_F)
# Smallest meridian radius of curvature (at the equator): bounds how far in latitude a path of
# given length can reach.
_M_MIN: Final = WGS84_A * (1 - WGS84_E2)
_DEG: Final = math.pi / 180.0
# Mean Earth radius for the spherical prefilter. Spherical and ellipsoidal distances differ by
# less than 0.56 % (checked against geopy in the tests), so 0.99 x spherical is a lower bound.
_R_MEAN: Final = 6_371_008.8
_SPHERE_LOWER: Final = 0.99

# Raster parameters: Chebyshev distances are stored up to this many cells (int8 codes).
_K_CAP: Final = 24
_PAD_CELLS: Final = 2
# Boundary samples are at most a quarter cell apart, so every boundary point lies within an
# eighth of a cell of a sample; this is the clearance lost to sampling.
_SAMPLE_FRACTION: Final = 0.25
_SAMPLE_SLACK: Final = 0.125

_INSIDE: Final = np.int8(Membership.INSIDE)
_OUTSIDE: Final = np.int8(Membership.OUTSIDE)
_UNCERTAIN: Final = np.int8(Membership.UNCERTAIN)


# --------------------------------------------------------------------------- ellipsoid helpers


def _prime_vertical_radius(phi_rad: FloatArray | float) -> FloatArray:
    s = np.sin(phi_rad)
    return np.asarray(WGS84_A / np.sqrt(1.0 - WGS84_E2 * s * s), dtype=np.float64)


def _meridian_radius(phi_rad: FloatArray | float) -> FloatArray:
    s = np.sin(phi_rad)
    w = 1.0 - WGS84_E2 * s * s
    return np.asarray(WGS84_A * (1.0 - WGS84_E2) / (w * np.sqrt(w)), dtype=np.float64)


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres per degree of longitude and of latitude at a latitude on WGS-84.

    Parameters
    ----------
    lat : float
        Latitude in degrees.

    Returns
    -------
    tuple of float
        ``(east_m_per_deg, north_m_per_deg)``.

    Examples
    --------
    >>> east, north = metres_per_degree(40.0)
    >>> round(east), round(north)
    (85394, 111035)
    """
    phi = lat * _DEG
    east = float(_prime_vertical_radius(phi)) * math.cos(phi) * _DEG
    north = float(_meridian_radius(phi)) * _DEG
    return east, north


def _scale_bound(
    lat: FloatArray, radius_m: FloatArray, kx: FloatArray | float, ky: FloatArray | float
) -> FloatArray:
    """Largest projected length per true metre over the band a disc can reach.

    ``kx``/``ky`` are the projection's metres-per-degree at its centre. East-west scale grows
    with |latitude| (parallels shrink), north-south scale shrinks with it (the meridian radius
    grows), so the worst cases sit at the band's far and near ends.
    """
    band = radius_m / _M_MIN / _DEG
    alat = np.abs(lat)
    far = alat + band
    near = np.maximum(alat - band, 0.0)
    far_rad = np.minimum(far, 90.0) * _DEG
    parallel = _prime_vertical_radius(far_rad) * np.cos(far_rad) * _DEG
    with np.errstate(divide="ignore"):
        sx = np.where(far < 90.0, kx / np.maximum(parallel, 1e-300), np.inf)
    sy = ky / (_meridian_radius(near * _DEG) * _DEG)
    return np.asarray(np.maximum(sx, sy), dtype=np.float64)


def geodesic_distance_m(
    lon1: npt.ArrayLike, lat1: npt.ArrayLike, lon2: npt.ArrayLike, lat2: npt.ArrayLike
) -> FloatArray:
    """Geodesic distance on the WGS-84 ellipsoid (Vincenty's inverse formula), vectorised.

    Accurate to well under a millimetre except for nearly antipodal points, which never occur
    between a fix and a fence in China.

    Parameters
    ----------
    lon1, lat1, lon2, lat2 : array_like of float
        Degrees WGS-84; broadcast together.

    Returns
    -------
    numpy.ndarray of float
        Distances in metres.

    Examples
    --------
    >>> float(geodesic_distance_m(116.0, 40.0, 116.0, 41.0).round(3)[()])
    111044.261
    """
    lam_l = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    lam_l = (lam_l + math.pi) % (2 * math.pi) - math.pi
    u1 = np.arctan((1 - WGS84_F) * np.tan(np.radians(np.asarray(lat1, dtype=np.float64))))
    u2 = np.arctan((1 - WGS84_F) * np.tan(np.radians(np.asarray(lat2, dtype=np.float64))))
    lam_l, u1, u2 = np.broadcast_arrays(lam_l, u1, u2)
    sin_u1, cos_u1, sin_u2, cos_u2 = np.sin(u1), np.cos(u1), np.sin(u2), np.cos(u2)
    lam = lam_l.copy()
    for _ in range(100):
        sin_lam, cos_lam = np.sin(lam), np.cos(lam)
        sin_sigma = np.hypot(cos_u2 * sin_lam, cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam)
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = np.arctan2(sin_sigma, cos_sigma)
        safe_sin_sigma = np.where(sin_sigma == 0.0, 1.0, sin_sigma)
        sin_alpha = np.where(sin_sigma == 0.0, 0.0, cos_u1 * cos_u2 * sin_lam / safe_sin_sigma)
        cos2_alpha = 1.0 - sin_alpha * sin_alpha
        safe_cos2_alpha = np.where(cos2_alpha == 0.0, 1.0, cos2_alpha)
        # On the equator cos²α = 0 and the term is defined as 0.
        cos_2sm = np.where(
            cos2_alpha == 0.0, 0.0, cos_sigma - 2.0 * sin_u1 * sin_u2 / safe_cos2_alpha
        )
        c = WGS84_F / 16.0 * cos2_alpha * (4.0 + WGS84_F * (4.0 - 3.0 * cos2_alpha))
        lam_next = lam_l + (1.0 - c) * WGS84_F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm))
        )
        done = bool(np.all(np.abs(lam_next - lam) < 1e-12))
        lam = lam_next
        if done:
            break
    u_sq = cos2_alpha * (WGS84_A**2 - WGS84_B**2) / WGS84_B**2
    big_a = 1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)))
    big_b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)))
    delta_sigma = (
        big_b
        * sin_sigma
        * (
            cos_2sm
            + big_b
            / 4.0
            * (
                cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)
                - big_b
                / 6.0
                * cos_2sm
                * (-3.0 + 4.0 * sin_sigma * sin_sigma)
                * (-3.0 + 4.0 * cos_2sm * cos_2sm)
            )
        )
    )
    return np.asarray(WGS84_B * big_a * (sigma - delta_sigma), dtype=np.float64)


def _spherical_distance_m(
    lon1: FloatArray | float, lat1: FloatArray | float, lon2: FloatArray, lat2: FloatArray
) -> FloatArray:
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    h = (
        np.sin((p2 - p1) * 0.5) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) * 0.5) ** 2
    )
    return np.asarray(2.0 * _R_MEAN * np.arcsin(np.sqrt(np.minimum(h, 1.0))), dtype=np.float64)


# --------------------------------------------------------------------------- prepared areas


class PreparedArea:
    """An area made ready for fast repeated classification; build once, share everywhere.

    Parameters
    ----------
    shape : shapely.Polygon, shapely.MultiPolygon or Circle
        The area in WGS-84 (lon, lat) degrees. It is held by reference.
    grid_cells : int, optional
        Cells along the longer side of the raster. By default it grows with the polygon's
        vertex count (16 to 256), since simple polygons are cheap to test exactly anyway.

    Raises
    ------
    ValueError
        If the shape is empty, not a (Multi)Polygon or Circle, or has non-finite coordinates.

    Examples
    --------
    >>> import shapely
    >>> area = PreparedArea(shapely.box(116.0, 39.0, 117.0, 40.0))
    >>> classify(area, [116.5, 118.0], [39.5, 39.5], [30.0, 30.0]).tolist()
    [1, 2]
    """

    __slots__ = (
        "_boundary",
        "_proj",
        "bbox",
        "cell",
        "circle",
        "grid",
        "grid_origin",
        "grid_radius_limit",
        "grid_scale",
        "kx",
        "ky",
        "lat0",
        "lon0",
        "shape",
    )

    def __init__(
        self,
        shape: shapely.Polygon | shapely.MultiPolygon | Circle,
        *,
        grid_cells: int | None = None,
    ) -> None:
        self.shape = shape
        if isinstance(shape, Circle):
            self.circle: Circle | None = shape
            self._init_empty_grid(shape.lon, shape.lat)
            return
        if not isinstance(shape, shapely.Polygon | shapely.MultiPolygon):
            raise ValueError(f"an area must be a Polygon, MultiPolygon or Circle, got {shape!r}")
        if shape.is_empty:
            raise ValueError("an area cannot be empty")
        coords = shapely.get_coordinates(shape)
        if not np.all(np.isfinite(coords)):
            raise ValueError("area coordinates must be finite")
        self.circle = None
        lon_min, lat_min, lon_max, lat_max = shape.bounds
        if lat_min < -89.0 or lat_max > 89.0:
            raise ValueError("areas reaching the poles are not supported")
        self.lon0 = (lon_min + lon_max) / 2.0
        self.lat0 = (lat_min + lat_max) / 2.0
        self.kx, self.ky = metres_per_degree(self.lat0)
        lon0, lat0, kx, ky = self.lon0, self.lat0, self.kx, self.ky
        self._proj = shapely.transform(
            shape, lambda c: np.column_stack(((c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * ky))
        )
        self._boundary = shapely.boundary(self._proj)
        shapely.prepare(self._proj)
        shapely.prepare(self._boundary)
        self.bbox: tuple[float, float, float, float] = tuple(shapely.bounds(self._proj).tolist())
        if grid_cells is None:
            grid_cells = int(np.clip(8.0 * math.sqrt(len(coords)), 16, 256))
        if grid_cells < 4:
            raise ValueError("grid_cells must be at least 4")
        self._build_grid(grid_cells)

    # The circle case keeps the attributes defined so the index can read them uniformly.
    def _init_empty_grid(self, lon: float, lat: float) -> None:
        self.lon0, self.lat0 = lon, lat
        self.kx, self.ky = metres_per_degree(lat)
        self._proj = None
        self._boundary = None
        self.bbox = (0.0, 0.0, 0.0, 0.0)
        self.grid = np.zeros((0, 0), dtype=np.int8)
        self.grid_origin = (0.0, 0.0)
        self.cell = 1.0
        self.grid_scale = 1.0
        self.grid_radius_limit = -1.0

    @property
    def projected(self) -> shapely.Polygon | shapely.MultiPolygon:
        """The polygon in the area's local metric projection (prepared); not for circles."""
        if self._proj is None:
            raise ValueError("a circle area has no projected polygon")
        return self._proj

    def project(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Project degrees to the area's local plane (units: metres at the centre)."""
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def unproject(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Inverse of :meth:`project`."""
        return x / self.kx + self.lon0, y / self.ky + self.lat0

    def _build_grid(self, cells: int) -> None:
        x0, y0, x1, y1 = self.bbox
        cell = max(x1 - x0, y1 - y0) / cells
        if not cell > 0.0:
            raise ValueError("an area must have a non-zero extent")
        nx = math.ceil((x1 - x0) / cell) + 2 * _PAD_CELLS
        ny = math.ceil((y1 - y0) / cell) + 2 * _PAD_CELLS
        gx0 = x0 - _PAD_CELLS * cell
        gy0 = y0 - _PAD_CELLS * cell

        # Segments of every ring (exterior and holes), never joining two rings.
        rings = shapely.get_rings(shapely.get_parts(self._proj))
        pts, ring_idx = shapely.get_coordinates(rings, return_index=True)
        same = ring_idx[1:] == ring_idx[:-1]
        sx0, sy0 = pts[:-1][same, 0], pts[:-1][same, 1]
        sx1, sy1 = pts[1:][same, 0], pts[1:][same, 1]

        # Mark every cell holding a boundary sample.
        length = np.hypot(sx1 - sx0, sy1 - sy0)
        n_samples = np.maximum(np.ceil(length / (_SAMPLE_FRACTION * cell)), 1).astype(np.int64)
        seg = np.repeat(np.arange(len(length)), n_samples)
        starts = np.cumsum(n_samples) - n_samples
        t = (np.arange(int(n_samples.sum())) - starts[seg]) / n_samples[seg]
        px = sx0[seg] + t * (sx1 - sx0)[seg]
        py = sy0[seg] + t * (sy1 - sy0)[seg]
        ix = np.clip(((px - gx0) / cell).astype(np.int64), 0, nx - 1)
        iy = np.clip(((py - gy0) / cell).astype(np.int64), 0, ny - 1)
        reached = np.zeros((ny, nx), dtype=np.bool_)
        reached[iy, ix] = True

        # Chebyshev distance (in cells) to the nearest marked cell, capped, by repeated 3x3
        # dilation; the reached set after k steps is exactly the cells within distance k.
        dist = np.full((ny, nx), _K_CAP, dtype=np.int8)
        dist[reached] = 0
        for k in range(1, _K_CAP):
            grown = reached.copy()
            grown[1:, :] |= reached[:-1, :]
            grown[:-1, :] |= reached[1:, :]
            wide = grown.copy()
            wide[:, 1:] |= grown[:, :-1]
            wide[:, :-1] |= grown[:, 1:]
            dist[wide & ~reached] = k
            reached = wide
            if reached.all():
                break

        # Inside/outside of each cell centre by the crossing-number rule, row by row: count the
        # ring edges crossing the row's centre line to the right of each centre. The half-open
        # test (y0 > yc) != (y1 > yc) counts an edge through a vertex exactly once.
        yc = gy0 + (np.arange(ny) + 0.5) * cell
        lo = np.minimum(sy0, sy1)
        hi = np.maximum(sy0, sy1)
        j_lo = np.clip(np.floor((lo - gy0) / cell - 0.5).astype(np.int64), 0, ny)
        j_hi = np.clip(np.ceil((hi - gy0) / cell - 0.5).astype(np.int64) + 1, 0, ny)
        span = np.maximum(j_hi - j_lo, 0)
        cseg = np.repeat(np.arange(len(span)), span)
        cstart = np.cumsum(span) - span
        row = j_lo[cseg] + np.arange(int(span.sum())) - cstart[cseg]
        yrow = yc[row]
        crosses = (sy0[cseg] > yrow) != (sy1[cseg] > yrow)
        cseg, row, yrow = cseg[crosses], row[crosses], yrow[crosses]
        xcross = sx0[cseg] + (yrow - sy0[cseg]) * (sx1 - sx0)[cseg] / (sy1 - sy0)[cseg]
        # Number of cell centres strictly left of the crossing.
        left = np.clip(np.ceil((xcross - gx0) / cell - 0.5).astype(np.int64), 0, nx)
        counts = np.zeros((ny, nx + 1), dtype=np.int64)
        np.add.at(counts, (row, left), 1)
        right_of = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]
        inside = (right_of % 2).astype(np.bool_)

        self.grid = np.where(inside, dist, -dist).astype(np.int8)
        self.grid_origin = (gx0, gy0)
        self.cell = cell
        # The raster decides only radii up to its largest clearance; a generous limit in metres
        # (projected and true lengths differ by a few percent at most over one area).
        clear_max = (_K_CAP - 1 - _SAMPLE_SLACK) * cell
        self.grid_radius_limit = 2.0 * clear_max
        lat_lo = self.lat0 + gy0 / self.ky
        lat_hi = self.lat0 + (gy0 + ny * cell) / self.ky
        # One scale bound for every fix inside the raster with radius <= grid_radius_limit: the
        # bound about the band's middle latitude, widened to cover the whole band.
        half_band_m = (lat_hi - lat_lo) / 2.0 * _DEG * _M_MIN
        self.grid_scale = float(
            _scale_bound(
                np.array([(lat_lo + lat_hi) / 2.0]),
                np.array([half_band_m + self.grid_radius_limit]),
                self.kx,
                self.ky,
            )[0]
        )

    # ------------------------------------------------------------------ classification parts

    def _exact(
        self, x: FloatArray, y: FloatArray, lat: FloatArray, radius_m: FloatArray
    ) -> Int8Array:
        """Exact projected test (no raster) for fixes given in the area's projection."""
        assert self._proj is not None
        return exact_decide(
            self._proj, self._boundary, self.bbox, self.kx, self.ky, x, y, lat, radius_m
        )

    def _classify_circle(self, lon: FloatArray, lat: FloatArray, radius_m: FloatArray) -> Int8Array:
        assert self.circle is not None
        return classify_circles(
            self.circle.lon, self.circle.lat, self.circle.radius_m, lon, lat, radius_m
        )


def classify_circles(
    c_lon: FloatArray | float,
    c_lat: FloatArray | float,
    c_radius_m: FloatArray | float,
    lon: FloatArray,
    lat: FloatArray,
    radius_m: FloatArray,
) -> Int8Array:
    """Classify discs against geodesic circles, pairwise (arrays broadcast together).

    Parameters
    ----------
    c_lon, c_lat, c_radius_m : float or numpy.ndarray
        Circle centres (degrees) and radii (metres).
    lon, lat, radius_m : numpy.ndarray
        Fix positions (degrees) and accuracy radii (metres).

    Returns
    -------
    numpy.ndarray of int8
        :class:`Membership` codes.
    """
    lon, lat, radius_m = np.broadcast_arrays(lon, lat, radius_m)
    c_lon_a, c_lat_a, c_r_a = (
        np.broadcast_to(np.asarray(v, dtype=np.float64), lon.shape)
        for v in (c_lon, c_lat, c_radius_m)
    )
    out = np.full(lon.shape, _OUTSIDE, dtype=np.int8)
    reach = c_r_a + radius_m
    # Far fixes are outside by lower bounds on the geodesic distance; only the rest pay for
    # Vincenty's iteration. First the cheapest: any path between two latitudes is at least the
    # meridian arc between them, itself at least M(0) per radian.
    cand = np.flatnonzero(~(np.abs(lat - c_lat_a) * (_DEG * _M_MIN) > reach))
    lower = _SPHERE_LOWER * _spherical_distance_m(
        c_lon_a[cand], c_lat_a[cand], lon[cand], lat[cand]
    )
    todo = cand[~(lower > reach[cand])]
    if len(todo):
        d = geodesic_distance_m(c_lon_a[todo], c_lat_a[todo], lon[todo], lat[todo])
        r = radius_m[todo]
        big_r = c_r_a[todo]
        sub = np.full(len(todo), _UNCERTAIN, dtype=np.int8)
        sub[d + r <= big_r] = _INSIDE
        sub[d > big_r + r] = _OUTSIDE
        out[todo] = sub
    return out


def _validate(
    lon: npt.ArrayLike, lat: npt.ArrayLike, accuracy_m: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    acc_a = np.atleast_1d(np.asarray(0.0 if accuracy_m is None else accuracy_m, dtype=np.float64))
    lon_a, lat_a, acc_a = np.broadcast_arrays(lon_a, lat_a, acc_a)
    if lon_a.ndim != 1:
        raise ValueError("lon, lat and accuracy_m must be scalars or 1-D arrays")
    if np.isnan(lon_a).any() or np.isnan(lat_a).any():
        raise ValueError("coordinates contain NaN")
    if not (np.all(np.abs(lat_a) <= 90.0) and np.all(np.abs(lon_a) <= 180.0)):
        raise ValueError("coordinates must be degrees: |lon| <= 180 and |lat| <= 90")
    if not np.all(acc_a >= 0.0):
        raise ValueError(
            "accuracy_m must be >= 0 and not NaN (substitute the policy default before classifying)"
        )
    return lon_a, lat_a, acc_a


def _grid_decide(
    x: FloatArray,
    y: FloatArray,
    radius_m: FloatArray,
    grid_flat: npt.NDArray[np.int8],
    offset: npt.NDArray[np.int64] | int,
    nx: npt.NDArray[np.int64] | int,
    ny: npt.NDArray[np.int64] | int,
    gx0: FloatArray | float,
    gy0: FloatArray | float,
    cell: FloatArray | float,
    scale: FloatArray | float,
    radius_limit: FloatArray | float,
) -> Int8Array:
    """Raster decisions (``UNCERTAIN`` where the raster cannot decide); parameters per fix."""
    fx = (x - gx0) / cell
    fy = (y - gy0) / cell
    in_grid = (fx >= 0.0) & (fy >= 0.0) & (fx < nx) & (fy < ny) & (radius_m <= radius_limit)
    ix = np.where(in_grid, fx, 0.0).astype(np.int64)
    iy = np.where(in_grid, fy, 0.0).astype(np.int64)
    code = np.where(in_grid, grid_flat[offset + iy * nx + ix], 0).astype(np.float64)
    clearance = (np.abs(code) - (1.0 + _SAMPLE_SLACK)) * cell
    rp = radius_m * scale
    out = np.zeros(x.shape, dtype=np.int8)
    out[(code >= 2.0) & (clearance >= rp)] = _INSIDE
    out[(code <= -2.0) & (clearance > rp)] = _OUTSIDE
    return out


def exact_decide(
    proj: shapely.Geometry | npt.NDArray[np.object_],
    boundary: shapely.Geometry | npt.NDArray[np.object_],
    bbox: tuple[float, float, float, float] | tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    kx: FloatArray | float,
    ky: FloatArray | float,
    x: FloatArray,
    y: FloatArray,
    lat: FloatArray,
    radius_m: FloatArray,
) -> Int8Array:
    """Exact disc test in a projected plane; area parameters are scalars or per-fix arrays.

    Parameters
    ----------
    proj, boundary : shapely.Geometry or numpy.ndarray of geometries
        Prepared projected polygon(s) and their boundaries (one per fix when arrays).
    bbox : tuple
        ``(xmin, ymin, xmax, ymax)`` of the projected polygon(s).
    kx, ky : float or numpy.ndarray
        Metres per degree of the projection(s) at their centres.
    x, y : numpy.ndarray
        Fix positions in the projection.
    lat : numpy.ndarray
        Fix latitudes, degrees (for the scale bound).
    radius_m : numpy.ndarray
        Accuracy radii, metres.

    Returns
    -------
    numpy.ndarray of int8
        :class:`~geofences.model.Membership` codes.
    """
    rp = radius_m * _scale_bound(lat, radius_m, kx, ky)
    x0, y0, x1, y1 = bbox
    dx = np.maximum(np.maximum(x0 - x, x - x1), 0.0)
    dy = np.maximum(np.maximum(y0 - y, y - y1), 0.0)
    out = np.full(x.shape, _OUTSIDE, dtype=np.int8)
    # Discs clear of the bounding box are outside without asking GEOS.
    near = np.flatnonzero(~(np.hypot(dx, dy) > rp))
    if len(near) == 0:
        return out

    def pick(
        v: shapely.Geometry | npt.NDArray[np.object_],
    ) -> shapely.Geometry | npt.NDArray[np.object_]:
        return v[near] if isinstance(v, np.ndarray) else v

    xs, ys = x[near], y[near]
    inside = shapely.contains_xy(pick(proj), xs, ys)
    touches = shapely.dwithin(pick(boundary), shapely.points(xs, ys), rp[near])
    sub = np.full(len(near), _UNCERTAIN, dtype=np.int8)
    sub[inside & ~touches] = _INSIDE
    sub[~inside & ~touches] = _OUTSIDE
    out[near] = sub
    return out


def classify_projected(
    area: PreparedArea,
    x: FloatArray,
    y: FloatArray,
    lat: FloatArray,
    radius_m: FloatArray,
    decided: Int8Array,
) -> Int8Array:
    """Finish classification of fixes the raster left ``UNCERTAIN`` (in place on ``decided``).

    Parameters
    ----------
    area : PreparedArea
        A polygon area.
    x, y : numpy.ndarray
        Fix positions in the area's projection.
    lat : numpy.ndarray
        Fix latitudes, degrees (for the scale bound).
    radius_m : numpy.ndarray
        Accuracy radii, metres.
    decided : numpy.ndarray of int8
        Raster answers; ``UNCERTAIN`` entries are recomputed exactly.

    Returns
    -------
    numpy.ndarray of int8
        ``decided``, completed.
    """
    todo = np.flatnonzero(decided == _UNCERTAIN)
    if len(todo):
        decided[todo] = area._exact(x[todo], y[todo], lat[todo], radius_m[todo])
    return decided


def classify(
    area: PreparedArea, lon: npt.ArrayLike, lat: npt.ArrayLike, accuracy_m: npt.ArrayLike
) -> Int8Array:
    """Classify accuracy discs against one area.

    Parameters
    ----------
    area : PreparedArea
        Polygon, multipolygon (holes respected) or circle area.
    lon, lat : array_like of float
        Fix positions, degrees WGS-84.
    accuracy_m : array_like of float
        Accuracy radius of each fix in metres (>= 0; ``inf`` gives ``UNCERTAIN``).

    Returns
    -------
    numpy.ndarray of int8
        :class:`~geofences.model.Membership` codes: ``INSIDE`` (1) when the whole disc is
        inside, ``OUTSIDE`` (2) when the whole disc is outside, else ``UNCERTAIN`` (0).

    Raises
    ------
    ValueError
        On NaN or out-of-range coordinates, or NaN or negative accuracy.

    Examples
    --------
    >>> import shapely
    >>> area = PreparedArea(shapely.box(116.0, 39.0, 116.01, 39.01))
    >>> # Centre of a ~850 m x 1.1 km box: a 100 m disc is inside, a 1 km disc is not.
    >>> classify(area, [116.005, 116.005], [39.005, 39.005], [100.0, 1000.0]).tolist()
    [1, 0]
    """
    lon_a, lat_a, acc_a = _validate(lon, lat, accuracy_m)
    if area.circle is not None:
        return area._classify_circle(lon_a, lat_a, acc_a)
    x, y = area.project(lon_a, lat_a)
    ox, oy = area.grid_origin
    ny, nx = area.grid.shape
    decided = _grid_decide(
        x,
        y,
        acc_a,
        area.grid.reshape(-1),
        0,
        nx,
        ny,
        ox,
        oy,
        area.cell,
        area.grid_scale,
        area.grid_radius_limit,
    )
    return classify_projected(area, x, y, lat_a, acc_a, decided)


def distance_outside_m(area: PreparedArea, lon: npt.ArrayLike, lat: npt.ArrayLike) -> FloatArray:
    """Geodesic distance in metres from each point to the area (0 inside or on the boundary).

    The nearest boundary point is found in the area's local projection and the distance to it
    is measured geodesically, so it is exact to centimetres within tens of kilometres of the
    area; for points hundreds of kilometres away the chosen boundary point may be slightly
    off the true nearest one, overstating the distance by well under 1 %.

    Parameters
    ----------
    area : PreparedArea
        The area.
    lon, lat : array_like of float
        Degrees WGS-84.

    Returns
    -------
    numpy.ndarray of float
        Metres.

    Examples
    --------
    >>> import shapely
    >>> area = PreparedArea(shapely.box(116.0, 39.0, 117.0, 40.0))
    >>> distance_outside_m(area, [116.5, 116.5], [39.5, 40.01]).round(1).tolist()
    [0.0, 1110.3]
    """
    lon_a, lat_a, _ = _validate(lon, lat, None)
    if area.circle is not None:
        c = area.circle
        d = geodesic_distance_m(c.lon, c.lat, lon_a, lat_a)
        return np.asarray(np.maximum(d - c.radius_m, 0.0), dtype=np.float64)
    x, y = area.project(lon_a, lat_a)
    out = np.zeros(len(lon_a), dtype=np.float64)
    outside = np.flatnonzero(~shapely.intersects_xy(area.projected, x, y))
    if len(outside):
        lines = shapely.shortest_line(area.projected, shapely.points(x[outside], y[outside]))
        ends = shapely.get_coordinates(shapely.get_point(lines, 0))
        near_lon, near_lat = area.unproject(ends[:, 0], ends[:, 1])
        out[outside] = geodesic_distance_m(lon_a[outside], lat_a[outside], near_lon, near_lat)
    return out
