"""The fence model: what a subject must stay inside of, or away from, and when.

A :class:`Fence` is one rule's geometry: an activity area (活动区域, must stay inside), an
exclusion zone (禁止令 places, must stay out), a home circle for curfew windows, or a temporary
leave destination granted by an approved 外出. Its shape is either a shapely Polygon/MultiPolygon
in WGS-84 (lon, lat) or a geodesic :class:`Circle`. Geometries are shared, not copied: many
fences of many subjects hold the very same shapely object (a county boundary), and the
prepared forms built from it are shared the same way (one :class:`~geofences.classify.PreparedArea`
per geometry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import shapely

from geofences.schedule import Schedule

__all__ = ["Circle", "Fence", "FenceKind", "Membership"]


class Membership(IntEnum):
    """Where an accuracy disc lies relative to an area (stored as ``numpy.int8``).

    ``INSIDE`` means the whole disc is inside, ``OUTSIDE`` the whole disc outside; anything
    else, including a disc touching the boundary, is ``UNCERTAIN``.
    """

    UNCERTAIN = 0
    INSIDE = 1
    OUTSIDE = 2


class FenceKind(StrEnum):
    """What a fence means for the subject."""

    ACTIVITY_AREA = "activity_area"
    EXCLUSION = "exclusion"
    HOME = "home"
    LEAVE_DESTINATION = "leave_destination"


@dataclass(frozen=True, slots=True)
class Circle:
    """A geodesic circle on the WGS-84 ellipsoid.

    Parameters
    ----------
    lon, lat : float
        Centre, degrees WGS-84.
    radius_m : float
        Radius in metres (geodesic distance from the centre), > 0.
    """

    lon: float
    lat: float
    radius_m: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"circle longitude must be in [-180, 180], got {self.lon!r}")
        if not (math.isfinite(self.lat) and -90.0 < self.lat < 90.0):
            raise ValueError(f"circle latitude must be in (-90, 90), got {self.lat!r}")
        if not (math.isfinite(self.radius_m) and self.radius_m > 0.0):
            raise ValueError(
                f"circle radius must be a positive number of metres, got {self.radius_m!r}"
            )


@dataclass(frozen=True, slots=True, eq=False)
class Fence:
    """One fence of one subject.

    Exactly one of ``geometry`` and ``circle`` is given. Equality and hashing are by identity of
    the shared geometry object (plus the other fields), never by comparing vertices, so building
    many fences on one county polygon stays cheap.

    Parameters
    ----------
    id : int or str
        The fence's identifier in the caller's store.
    kind : FenceKind
        What the fence means.
    geometry : shapely.Polygon or shapely.MultiPolygon, optional
        Shape in WGS-84 (lon, lat) degrees; held by reference, never copied.
    circle : Circle, optional
        Geodesic circle instead of a polygon.
    schedule : Schedule, optional
        When the fence applies; ``None`` means always.

    Examples
    --------
    >>> home = Fence(7, FenceKind.HOME, circle=Circle(116.39, 39.91, 150.0))
    >>> home.shape is home.circle
    True
    """

    id: int | str
    kind: FenceKind
    geometry: shapely.Polygon | shapely.MultiPolygon | None = None
    circle: Circle | None = None
    schedule: Schedule | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int | str):
            raise ValueError(f"fence id must be an int or a str, got {self.id!r}")
        if not isinstance(self.kind, FenceKind):
            raise ValueError(f"fence kind must be a FenceKind, got {self.kind!r}")
        if (self.geometry is None) == (self.circle is None):
            raise ValueError("a fence needs exactly one of geometry and circle")
        if self.geometry is not None:
            if not isinstance(self.geometry, shapely.Polygon | shapely.MultiPolygon):
                raise ValueError(
                    f"fence geometry must be a Polygon or MultiPolygon, "
                    f"got {self.geometry.geom_type}"
                )
            if self.geometry.is_empty:
                raise ValueError("fence geometry is empty")
        if self.circle is not None and not isinstance(self.circle, Circle):
            raise ValueError("fence circle must be a Circle")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise ValueError("fence schedule must be a Schedule or None")

    @property
    def shape(self) -> shapely.Polygon | shapely.MultiPolygon | Circle:
        """The geometry or the circle, whichever the fence has."""
        shape = self.geometry if self.geometry is not None else self.circle
        assert shape is not None
        return shape

    def _key(self) -> tuple[object, ...]:
        return (self.id, self.kind, id(self.geometry), self.circle, self.schedule)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fence):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
