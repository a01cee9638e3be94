"""Conformance on real data: DataV boundaries (GCJ-02) against GeoLife traces (WGS-84).

Skipped when the shared reference data folder is absent.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import shapely

from geofences.classify import PreparedArea, classify
from geofences.crs import CRS
from geofences.geojson import parse_datav
from geofences.model import Membership

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DATAV = DATA / "boundaries" / "datav_GeoMapData_CN"
GEOLIFE = DATA / "geolife" / "Data"
HEADER_LINES = 6
# GeoLife carries no accuracy; 10 m is a typical open-sky phone GPS figure.
ACCURACY_M = 10.0

INSIDE, OUTSIDE = Membership.INSIDE, Membership.OUTSIDE

if not (DATAV.is_dir() and GEOLIFE.is_dir()):
    pytest.skip(f"shared reference data not found under {DATA}", allow_module_level=True)


def load_area(*files: str) -> shapely.Polygon | shapely.MultiPolygon:
    """Union of the DataV features in the given files, imported from GCJ-02 to WGS-84."""
    parts = []
    for name in files:
        fc = json.loads((DATAV / name).read_text(encoding="utf-8"))
        parts += [a.geometry for a in parse_datav(fc, crs=CRS.GCJ02, repair=True)]
    return shapely.union_all(parts)


@cache
def beijing() -> PreparedArea:
    files = sorted(p.name for p in (DATAV / "county").glob("1101*.json"))
    assert len(files) == 16
    return PreparedArea(load_area(*(f"county/{f}" for f in files)))


def load_user(user: str, pattern: str = "*.plt") -> tuple[npt.NDArray[np.float64], ...]:
    lon, lat, ts = [], [], []
    for path in sorted((GEOLIFE / user / "Trajectory").glob(pattern)):
        for line in path.read_text().splitlines()[HEADER_LINES:]:
            if line:
                r = line.split(",")
                lat.append(float(r[0]))
                lon.append(float(r[1]))
                ts.append(dt.datetime.fromisoformat(f"{r[5]}T{r[6]}+00:00").timestamp())
    return np.array(lon), np.array(lat), np.array(ts)


@pytest.mark.parametrize("user", ["000", "001", "003", "004"])
def test_haidian_users_never_leave_beijing(user: str) -> None:
    lon, lat, _ = load_user(user)
    assert len(lon) > 1_000
    got = classify(beijing(), lon, lat, np.full(len(lon), ACCURACY_M))
    assert not np.any(got == OUTSIDE)
    assert np.mean(got == INSIDE) > 0.99


def test_user_010_leaves_beijing_and_is_inside_tianjin() -> None:
    lon, lat, _ = load_user("010", "2007*.plt")
    acc = np.full(len(lon), ACCURACY_M)
    bj = classify(beijing(), lon, lat, acc)
    assert np.sum(bj == OUTSIDE) > 1_000
    assert np.sum(bj == INSIDE) > 1_000
    # Far away: Liaoning (about 42 N, 123.5 E) and Heilongjiang fixes are outside Beijing.
    far = lat > 41.5
    assert far.any()
    assert np.all(bj[far] == OUTSIDE)
    tianjin = PreparedArea(load_area("province/120000.json"))
    tj = classify(tianjin, lon, lat, acc)
    # Fixes in central Tianjin (around 39.1 N, 117.2 E) are inside Tianjin, not Beijing. The
    # simplified province file's districts do not quite meet: the union keeps hairline slivers
    # between them, and a fix next to one is rightly UNCERTAIN, never OUTSIDE.
    central = (np.abs(lat - 39.12) < 0.05) & (np.abs(lon - 117.2) < 0.08)
    assert central.sum() > 1_000
    assert not np.any(tj[central] == OUTSIDE)
    assert np.mean(tj[central] == INSIDE) > 0.9
    assert np.all(bj[central] == OUTSIDE)
    # No fix is inside both.
    assert not np.any((tj == INSIDE) & (bj == INSIDE))


def test_oroqen_banner_hole_is_outside() -> None:
    banner_geom = load_area("county/150723.json")
    assert sum(len(p.interiors) for p in shapely.get_parts(banner_geom)) == 1
    banner = PreparedArea(banner_geom)
    jiagedaqi_geom = load_area("county/232718.json")
    # Points spread over Jiagedaqi, kept 500 m clear of its boundary.
    inner = jiagedaqi_geom.buffer(-0.01)
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = inner.bounds
    lon = rng.uniform(x0, x1, 4_000)
    lat = rng.uniform(y0, y1, 4_000)
    keep = shapely.contains_xy(inner, lon, lat)
    lon, lat = lon[keep], lat[keep]
    assert len(lon) > 500
    got = classify(banner, lon, lat, np.full(len(lon), 50.0))
    assert np.all(got == OUTSIDE)
    assert np.all(
        classify(PreparedArea(jiagedaqi_geom), lon, lat, np.full(len(lon), 50.0)) == INSIDE
    )
    # And the banner's own interior, away from the hole, is inside.
    rep = banner_geom.representative_point()
    assert classify(banner, [rep.x], [rep.y], [50.0]).tolist() == [INSIDE]
