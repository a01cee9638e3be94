"""Many subjects' fences evaluated at once, with boundary polygons shared between subjects.

A :class:`FenceIndex` holds *shared areas* (county and city polygons, shared circles) and, per
subject, a reference to one activity area plus a handful of the subject's own exclusion zones.
A county polygon is prepared once (see :class:`~geofences.classify.PreparedArea`) however many
subjects live in it; a geometry object passed again (by identity) or under a known key returns
the same handle.

Layout, so that a subject costs tens of bytes rather than Python objects:

* subjects live in numpy arrays sorted by subject id (``searchsorted`` finds rows); each row
  holds its activity-area handle and an offset into flat exclusion arrays (a CSR layout);
* exclusion entries hold a zone reference (a shared-area handle, or ``-1`` for an own circle
  whose centre and radius sit in the same entry), the fence id and a schedule number;
* the rasters of all shared polygon areas are packed into one flat buffer with per-area
  parameters, so the raster pass of :func:`~geofences.classify.classify` runs for a whole batch
  of fixes of many subjects in one vectorised step; only fixes near a boundary are grouped by
  area for the exact test.

Changes (:meth:`FenceIndex.set_subject`, :meth:`FenceIndex.remove_subject`) are staged and merged
into the arrays on the next evaluation, in one vectorised pass, so bulk loading is linear.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import shapely

from geofences.classify import (
    PreparedArea,
    _grid_decide,
    _validate,
    classify_circles,
    exact_decide,
)
from geofences.model import Circle, Fence, FenceKind, Membership
from geofences.schedule import Schedule

__all__ = ["AreaHandle", "Evaluation", "ExclusionHits", "FenceIndex"]

AreaHandle = int
FloatArray = npt.NDArray[np.float64]
Int8Array = npt.NDArray[np.int8]
IntArray = npt.NDArray[np.int64]

_NO_AREA = -1
_NO_SCHEDULE = -1


class ExclusionHits(NamedTuple):
    """Exclusion results: one entry per (fix, active exclusion fence) pair, in row order.

    ``OUTSIDE`` pairs are included so the caller can close episodes; fences whose schedule is
    inactive at the fix's time are left out.

    Attributes
    ----------
    row : numpy.ndarray of int64
        Index of the fix in the evaluated batch.
    fence_id : numpy.ndarray
        The exclusion fence's id (int64, or object when some ids are strings).
    membership : numpy.ndarray of int8
        :class:`~geofences.model.Membership` of the fix's disc in that zone.
    """

    row: IntArray
    fence_id: npt.NDArray[np.int64] | npt.NDArray[np.object_]
    membership: Int8Array


class Evaluation(NamedTuple):
    """Result of :meth:`FenceIndex.evaluate` (unpacks as ``activity, exclusions``).

    Attributes
    ----------
    activity : numpy.ndarray of int8
        Membership of each fix in its subject's activity area (``UNCERTAIN`` when the subject
        has none).
    exclusions : ExclusionHits
        Per-pair exclusion memberships.
    """

    activity: Int8Array
    exclusions: ExclusionHits


class _Atlas:
    """Per-area parameters of all shared areas as arrays, rasters packed in one buffer."""

    __slots__ = (
        "boundary",
        "bx0",
        "bx1",
        "by0",
        "by1",
        "c_lat",
        "c_lon",
        "c_radius",
        "cell",
        "flat",
        "gx0",
        "gy0",
        "is_circle",
        "kx",
        "ky",
        "lat0",
        "lon0",
        "nx",
        "ny",
        "offset",
        "proj",
        "radius_limit",
        "scale",
    )

    def __init__(self, areas: Sequence[PreparedArea]) -> None:
        n = len(areas)
        self.is_circle = np.array([a.circle is not None for a in areas], dtype=np.bool_)
        self.lon0 = np.array([a.lon0 for a in areas], dtype=np.float64)
        self.lat0 = np.array([a.lat0 for a in areas], dtype=np.float64)
        self.kx = np.array([a.kx for a in areas], dtype=np.float64)
        self.ky = np.array([a.ky for a in areas], dtype=np.float64)
        self.gx0 = np.array([a.grid_origin[0] for a in areas], dtype=np.float64)
        self.gy0 = np.array([a.grid_origin[1] for a in areas], dtype=np.float64)
        self.cell = np.array([a.cell for a in areas], dtype=np.float64)
        self.ny = np.array([a.grid.shape[0] for a in areas], dtype=np.int64)
        self.nx = np.array([a.grid.shape[1] for a in areas], dtype=np.int64)
        self.scale = np.array([a.grid_scale for a in areas], dtype=np.float64)
        self.radius_limit = np.array([a.grid_radius_limit for a in areas], dtype=np.float64)
        self.c_lon = np.array([a.circle.lon if a.circle else 0.0 for a in areas])
        self.c_lat = np.array([a.circle.lat if a.circle else 0.0 for a in areas])
        self.c_radius = np.array([a.circle.radius_m if a.circle else 0.0 for a in areas])
        bbox = np.array([a.bbox for a in areas], dtype=np.float64).reshape(n, 4)
        self.bx0, self.by0, self.bx1, self.by1 = bbox.T.copy()
        self.proj = np.array([None if a.circle else a.projected for a in areas], dtype=object)
        self.boundary = np.array([None if a.circle else a.boundary for a in areas], dtype=object)
        sizes = self.nx * self.ny
        self.offset = np.zeros(n, dtype=np.int64)
        if n:
            self.offset[1:] = np.cumsum(sizes)[:-1]
        self.flat = np.empty(int(sizes.sum()), dtype=np.int8)
        for i, area in enumerate(areas):
            size = int(sizes[i])
            if size:
                start = int(self.offset[i])
                self.flat[start : start + size] = area.grid.reshape(-1)
                # Point the area at the packed copy so each raster is held once.
                area.grid = self.flat[start : start + size].reshape(area.grid.shape)


class FenceIndex:
    """Activity areas and exclusion zones of many subjects, evaluated in vectorised batches.

    Examples
    --------
    >>> import numpy as np, shapely
    >>> index = FenceIndex()
    >>> county = index.add_shared_area("110108", shapely.box(116.0, 39.8, 116.4, 40.2))
    >>> school = Fence(1, FenceKind.EXCLUSION, circle=Circle(116.2, 40.0, 200.0))
    >>> index.set_subject(42, activity_area=county, exclusions=[school])
    >>> act, exc = index.evaluate(np.array([42, 42]), np.array([116.2, 116.5]),
    ...                           np.array([40.0, 40.0]), np.array([20.0, 20.0]))
    >>> act.tolist(), exc.row.tolist(), exc.membership.tolist()
    ([1, 2], [0, 1], [1, 2])
    """

    def __init__(self) -> None:
        self._areas: list[PreparedArea] = []
        self._area_by_key: dict[Hashable, int] = {}
        self._area_by_shape: dict[int, int] = {}
        self._atlas: _Atlas | None = None
        self._tree: shapely.STRtree | None = None
        self._tree_handles: IntArray = np.zeros(0, dtype=np.int64)
        self._schedules: list[Schedule] = []
        self._schedule_ids: dict[Schedule, int] = {}
        self._staged: dict[int, tuple[int, tuple[Fence, ...]] | None] = {}
        # Compiled subject table (sorted by id) and exclusion entries (CSR).
        self._ids: IntArray = np.zeros(0, dtype=np.int64)
        self._activity: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self._ex_offsets: npt.NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self._ex_zone: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self._ex_fence: npt.NDArray[np.int64] | npt.NDArray[np.object_] = np.zeros(
            0, dtype=np.int64
        )
        self._ex_schedule: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._ex_lon: FloatArray = np.zeros(0, dtype=np.float64)
        self._ex_lat: FloatArray = np.zeros(0, dtype=np.float64)
        self._ex_radius: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    # ------------------------------------------------------------------ shared areas

    def add_shared_area(
        self, key: Hashable, geometry: shapely.Polygon | shapely.MultiPolygon | Circle
    ) -> AreaHandle:
        """Register an area shared by many subjects and return its handle.

        Parameters
        ----------
        key : hashable
            Caller's key (an adcode, a place id). A key seen before returns its existing handle;
            the geometry must then be the same object or equal to the registered one.
        geometry : shapely.Polygon, shapely.MultiPolygon or Circle
            WGS-84 (lon, lat) degrees; held by reference.

        Returns
        -------
        int
            The area handle.

        Raises
        ------
        ValueError
            If the key is registered with a different geometry, or the geometry is invalid.
        """
        if key in self._area_by_key:
            handle = self._area_by_key[key]
            known = self._areas[handle].shape
            if known is not geometry and not _same_shape(known, geometry):
                raise ValueError(f"area key {key!r} is already registered with another geometry")
            return handle
        handle = self._area_for_shape(geometry)
        self._area_by_key[key] = handle
        return handle

    def area(self, handle: AreaHandle) -> PreparedArea:
        """The prepared area behind a handle."""
        return self._areas[handle]

    def _area_for_shape(self, shape: shapely.Polygon | shapely.MultiPolygon | Circle) -> int:
        # Circles are values (hashable); polygons are shared by identity, never by comparing
        # their vertices.
        ident = hash(shape) if isinstance(shape, Circle) else id(shape)
        handle = self._area_by_shape.get(ident)
        if handle is not None and _same_shape(self._areas[handle].shape, shape):
            return handle
        self._areas.append(PreparedArea(shape))
        handle = len(self._areas) - 1
        self._area_by_shape[ident] = handle
        self._atlas = None
        self._tree = None
        return handle

    # ------------------------------------------------------------------ subjects

    def set_subject(
        self,
        subject_id: int,
        activity_area: AreaHandle | None = None,
        exclusions: Iterable[Fence] = (),
    ) -> None:
        """Set (or replace) a subject's activity area and exclusion fences.

        Parameters
        ----------
        subject_id : int
            The subject's id (int64).
        activity_area : int, optional
            Handle from :meth:`add_shared_area`; ``None`` when the subject has none.
        exclusions : iterable of Fence
            Fences of kind ``EXCLUSION``. Circles are stored inline; polygons are registered as
            areas shared by identity (the same polygon object used by many subjects is held
            once).

        Raises
        ------
        ValueError
            On an unknown handle or a fence that is not an exclusion.
        """
        sid = int(subject_id)
        if not -(2**63) <= sid < 2**63:
            raise ValueError("subject ids must fit in int64")
        if activity_area is None:
            handle = _NO_AREA
        else:
            handle = int(activity_area)
            if not 0 <= handle < len(self._areas):
                raise ValueError(f"unknown area handle {activity_area!r}")
        fences = tuple(exclusions)
        for fence in fences:
            if not isinstance(fence, Fence) or fence.kind is not FenceKind.EXCLUSION:
                raise ValueError(f"exclusions must be Fences of kind EXCLUSION, got {fence!r}")
            if fence.geometry is not None:
                self._area_for_shape(fence.geometry)
            if fence.schedule is not None and fence.schedule not in self._schedule_ids:
                if len(self._schedules) >= np.iinfo(np.int16).max:
                    raise ValueError("too many distinct exclusion schedules")
                self._schedule_ids[fence.schedule] = len(self._schedules)
                self._schedules.append(fence.schedule)
        self._staged[sid] = (handle, fences)

    def remove_subject(self, subject_id: int) -> None:
        """Forget a subject (a no-op for an unknown one)."""
        self._staged[int(subject_id)] = None

    def __contains__(self, subject_id: object) -> bool:
        if not isinstance(subject_id, int | np.integer):
            return False
        self._compile()
        pos = int(np.searchsorted(self._ids, subject_id))
        return pos < len(self._ids) and int(self._ids[pos]) == int(subject_id)

    def __len__(self) -> int:
        self._compile()
        return len(self._ids)

    @property
    def subject_bytes(self) -> int:
        """Bytes of the per-subject arrays (subject table and exclusion entries)."""
        self._compile()
        return int(
            self._ids.nbytes
            + self._activity.nbytes
            + self._ex_offsets.nbytes
            + self._ex_zone.nbytes
            + self._ex_fence.nbytes
            + self._ex_schedule.nbytes
        )

    @property
    def own_zone_bytes(self) -> int:
        """Bytes of the subjects' own circle geometry (centres and radii) held inline."""
        self._compile()
        return int(self._ex_lon.nbytes + self._ex_lat.nbytes + self._ex_radius.nbytes)

    def _compile(self) -> None:
        if not self._staged:
            return
        staged = self._staged
        self._staged = {}
        changed = np.fromiter(staged.keys(), dtype=np.int64, count=len(staged))
        keep = ~np.isin(self._ids, changed)
        counts = np.diff(self._ex_offsets)
        keep_rows = np.flatnonzero(keep)
        new = [(sid, v) for sid, v in staged.items() if v is not None]

        new_ids = np.array([sid for sid, _ in new], dtype=np.int64)
        new_act = np.array([v[0] for _, v in new], dtype=np.int32)
        new_counts = np.array([len(v[1]) for _, v in new], dtype=np.int64)
        fences = [f for _, v in new for f in v[1]]
        zone = np.array(
            [
                _NO_AREA if f.geometry is None else self._area_by_shape[id(f.geometry)]
                for f in fences
            ],
            dtype=np.int32,
        )
        sched = np.array(
            [
                _NO_SCHEDULE if f.schedule is None else self._schedule_ids[f.schedule]
                for f in fences
            ],
            dtype=np.int16,
        )
        c_lon = np.array([f.circle.lon if f.circle else np.nan for f in fences], dtype=np.float64)
        c_lat = np.array([f.circle.lat if f.circle else np.nan for f in fences], dtype=np.float64)
        c_rad = np.array(
            [f.circle.radius_m if f.circle else np.nan for f in fences], dtype=np.float32
        )
        fence_ids = [f.id for f in fences]
        all_int = self._ex_fence.dtype != np.object_ and all(isinstance(i, int) for i in fence_ids)
        fid_dtype: type = np.int64 if all_int else object
        new_fid: npt.NDArray[np.generic] = np.array(fence_ids, dtype=fid_dtype).reshape(-1)

        ids = np.concatenate([self._ids[keep_rows], new_ids])
        order = np.argsort(ids, kind="stable")
        lengths = np.concatenate([counts[keep_rows], new_counts])[order]
        starts = np.concatenate(
            [self._ex_offsets[:-1][keep_rows], len(self._ex_zone) + _starts(new_counts)]
        )[order]
        gather = np.repeat(starts - _starts(lengths), lengths) + np.arange(int(lengths.sum()))

        def merged(old: npt.NDArray[Any], fresh: npt.NDArray[Any]) -> npt.NDArray[Any]:
            if old.dtype != fresh.dtype:
                old = old.astype(fresh.dtype)
            out: npt.NDArray[Any] = np.concatenate([old, fresh])[gather]
            return out

        self._ids = ids[order]
        self._activity = np.concatenate([self._activity[keep_rows], new_act])[order]
        self._ex_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._ex_zone = merged(self._ex_zone, zone)
        self._ex_schedule = merged(self._ex_schedule, sched)
        self._ex_fence = merged(self._ex_fence, new_fid)
        self._ex_lon = merged(self._ex_lon, c_lon)
        self._ex_lat = merged(self._ex_lat, c_lat)
        self._ex_radius = merged(self._ex_radius, c_rad)

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        subject_ids: npt.ArrayLike,
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
        accuracy_m: npt.ArrayLike,
        ts: npt.ArrayLike | None = None,
    ) -> Evaluation:
        """Classify a batch of fixes of many subjects against their fences.

        Parameters
        ----------
        subject_ids : array_like of int64
            Subject of each fix; every subject must have been set.
        lon, lat : array_like of float
            Fix positions, degrees WGS-84.
        accuracy_m : array_like of float
            Accuracy radii, metres (>= 0, not NaN).
        ts : array_like of float, optional
            Fix times, UTC epoch seconds. Required when a subject of the batch has a scheduled
            exclusion: inactive fences are then left out of the result.

        Returns
        -------
        Evaluation
            ``(activity, exclusions)``.

        Raises
        ------
        KeyError
            If a subject id is unknown.
        ValueError
            On invalid coordinates or accuracies, or scheduled fences without ``ts``.
        """
        self._compile()
        lon_a, lat_a, acc_a = _validate(lon, lat, accuracy_m)
        sids = np.atleast_1d(np.asarray(subject_ids, dtype=np.int64))
        if sids.shape != lon_a.shape:
            raise ValueError("subject_ids must have one entry per fix")
        rows = np.searchsorted(self._ids, sids)
        found = rows < len(self._ids)
        found[found] = self._ids[rows[found]] == sids[found]
        if not found.all():
            missing = np.unique(sids[~found])[:5].tolist()
            raise KeyError(f"unknown subject ids, e.g. {missing}")

        activity = np.full(len(sids), np.int8(Membership.UNCERTAIN), dtype=np.int8)
        handles = self._activity[rows].astype(np.int64)
        has_area = np.flatnonzero(handles != _NO_AREA)
        if len(has_area):
            activity[has_area] = self._classify_areas(
                handles[has_area], lon_a[has_area], lat_a[has_area], acc_a[has_area]
            )

        begin = self._ex_offsets[rows]
        counts = self._ex_offsets[rows + 1] - begin
        pair_row = np.repeat(np.arange(len(sids), dtype=np.int64), counts)
        entry = np.repeat(begin - _starts(counts), counts) + np.arange(int(counts.sum()))
        sched = self._ex_schedule[entry]
        if np.any(sched != _NO_SCHEDULE):
            if ts is None:
                raise ValueError("ts is required: the batch involves scheduled exclusion fences")
            ts_a = np.broadcast_to(np.asarray(ts, dtype=np.float64), sids.shape)
            active = np.ones(len(entry), dtype=np.bool_)
            for number in np.unique(sched[sched != _NO_SCHEDULE]).tolist():
                sel = np.flatnonzero(sched == number)
                active[sel] = self._schedules[number].active_at(ts_a[pair_row[sel]])
            pair_row, entry = pair_row[active], entry[active]

        membership = np.empty(len(entry), dtype=np.int8)
        zone = self._ex_zone[entry].astype(np.int64)
        circ = np.flatnonzero(zone == _NO_AREA)
        if len(circ):
            r = pair_row[circ]
            e = entry[circ]
            membership[circ] = classify_circles(
                self._ex_lon[e],
                self._ex_lat[e],
                self._ex_radius[e].astype(np.float64),
                lon_a[r],
                lat_a[r],
                acc_a[r],
            )
        poly = np.flatnonzero(zone != _NO_AREA)
        if len(poly):
            r = pair_row[poly]
            membership[poly] = self._classify_areas(zone[poly], lon_a[r], lat_a[r], acc_a[r])
        return Evaluation(activity, ExclusionHits(pair_row, self._ex_fence[entry], membership))

    def _classify_areas(
        self, handles: IntArray, lon: FloatArray, lat: FloatArray, acc: FloatArray
    ) -> Int8Array:
        """Classify fixes, each against its own shared area, in one raster pass."""
        atlas = self._atlas
        if atlas is None:
            atlas = self._atlas = _Atlas(self._areas)
        out = np.empty(len(handles), dtype=np.int8)
        circle = atlas.is_circle[handles]
        if circle.any():
            c = np.flatnonzero(circle)
            h = handles[c]
            out[c] = classify_circles(
                atlas.c_lon[h], atlas.c_lat[h], atlas.c_radius[h], lon[c], lat[c], acc[c]
            )
        p = np.flatnonzero(~circle)
        if len(p) == 0:
            return out
        h = handles[p]
        lon_p, lat_p, acc_p = lon[p], lat[p], acc[p]
        x = (lon_p - atlas.lon0[h]) * atlas.kx[h]
        y = (lat_p - atlas.lat0[h]) * atlas.ky[h]
        decided = _grid_decide(
            x,
            y,
            acc_p,
            atlas.flat,
            atlas.offset[h],
            atlas.nx[h],
            atlas.ny[h],
            atlas.gx0[h],
            atlas.gy0[h],
            atlas.cell[h],
            atlas.scale[h],
            atlas.radius_limit[h],
        )
        todo = np.flatnonzero(decided == np.int8(Membership.UNCERTAIN))
        if len(todo):
            # The exact test runs once for all areas: shapely's predicates take one prepared
            # geometry per fix, so no Python loop over areas is needed.
            ht = h[todo]
            decided[todo] = exact_decide(
                atlas.proj[ht],
                atlas.boundary[ht],
                (atlas.bx0[ht], atlas.by0[ht], atlas.bx1[ht], atlas.by1[ht]),
                atlas.kx[ht],
                atlas.ky[ht],
                x[todo],
                y[todo],
                lat_p[todo],
                acc_p[todo],
            )
        out[p] = decided
        return out

    def locate(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[IntArray, IntArray]:
        """Shared polygon areas containing each point (for alert evidence: "now in 天津市").

        Uses one STRtree bulk query over all shared polygons, prepared once.

        Parameters
        ----------
        lon, lat : array_like of float
            Points, degrees WGS-84.

        Returns
        -------
        tuple of numpy.ndarray of int64
            ``(point_index, area_handle)`` pairs, sorted by point index.
        """
        lon_a, lat_a, _ = _validate(lon, lat, None)
        if self._tree is None:
            handles = [i for i, a in enumerate(self._areas) if a.circle is None]
            shapes = [self._areas[i].shape for i in handles]
            shapely.prepare(shapes)
            self._tree = shapely.STRtree(shapes)
            self._tree_handles = np.array(handles, dtype=np.int64)
        pairs = self._tree.query(shapely.points(lon_a, lat_a), predicate="within")
        order = np.lexsort((pairs[1], pairs[0]))
        return (
            pairs[0][order].astype(np.int64),
            self._tree_handles[pairs[1][order]].astype(np.int64),
        )


def _starts(counts: IntArray) -> IntArray:
    """Exclusive prefix sums: where each run of ``counts`` starts."""
    out = np.zeros(len(counts), dtype=np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=out[1:])
    return out


def _same_shape(
    a: shapely.Polygon | shapely.MultiPolygon | Circle,
    b: shapely.Polygon | shapely.MultiPolygon | Circle,
) -> bool:
    if isinstance(a, Circle) or isinstance(b, Circle):
        return a == b
    return a is b or bool(shapely.equals_exact(a, b, tolerance=0.0))
