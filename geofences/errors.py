"""The errors the kernel raises for input it cannot use."""

from __future__ import annotations

__all__ = ["GeometryError", "UnknownAdcodeError"]


class GeometryError(ValueError):
    """A geometry (or the feature carrying it) was rejected.

    Parameters
    ----------
    problem : str
        A stable slug saying what is wrong, for API responses and metrics:
        ``"wrong_type"``, ``"empty"``, ``"not_finite"``, ``"coordinates_out_of_range"``,
        ``"lat_lon_swapped"``, ``"degenerate_ring"``, ``"unclosed_ring"``,
        ``"too_many_vertices"``, ``"self_intersection"``, ``"hole_outside_shell"``,
        ``"nested_holes"``, ``"nested_shells"``, ``"disconnected_interior"``,
        ``"duplicate_rings"``, ``"invalid_geometry"``, ``"missing_property"``,
        ``"duplicate_adcode"``.
    detail : str
        What was found and where, for a person fixing the input.
    feature : str or None
        Which feature was rejected (its adcode and name, or its index), if known.

    Examples
    --------
    >>> err = GeometryError("unclosed_ring", "ring 0 ends at (1, 0)", feature="110101 东城区")
    >>> err.problem, err.feature
    ('unclosed_ring', '110101 东城区')
    >>> str(err)
    'unclosed_ring in feature 110101 东城区: ring 0 ends at (1, 0)'
    """

    def __init__(self, problem: str, detail: str, *, feature: str | None = None) -> None:
        self.problem = problem
        self.detail = detail
        self.feature = feature
        where = f" in feature {feature}" if feature is not None else ""
        super().__init__(f"{problem}{where}: {detail}")


class UnknownAdcodeError(LookupError):
    """An adcode (行政区划代码) names no imported administrative area.

    Parameters
    ----------
    code : str
        The adcode asked for.

    Examples
    --------
    >>> err = UnknownAdcodeError("120000")
    >>> err.code
    '120000'
    >>> str(err)
    "unknown adcode '120000': not imported, and no imported area lies under it"
    """

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(
            f"unknown adcode {code!r}: not imported, and no imported area lies under it"
        )
