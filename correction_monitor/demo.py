"""The newcomer's demo: a seeded county, XX县, served with simulated phones that misbehave.

``correction-monitor demo`` (``python3 dev.py demo``) migrates the database, starts the HTTP
service in this process exactly as ``correction-monitor serve`` serves it (the same listening
socket, ingest front and shutdown), seeds a demo world *through the service's own API* (so
demo data is validated exactly like real data), prints where everything is, and then runs
simulated phones until Ctrl-C or SIGTERM.

The world (everything is synthetic; the logins are for the demo only):

* org units: the county XX县 (``xx-county``, Asia/Shanghai) with two stations, 城关司法所
  (``xx-chengguan``) and 东关司法所 (``xx-dongguan``);
* officers: an administrator, a county administrator (县局), an officer and a supervisor
  (所长) per station, and an auditor; each password is ``demo-<username>-2026``;
* a county boundary drawn here (:func:`county_boundary`: an irregular star-shaped polygon of
  144 vertices around lon 112.9, lat 28.2, generated deterministically; no real boundary
  data), imported as a WGS-84 administrative area with the made-up adcode ``990121`` and
  used as the activity area (活动区域) of every subject;
* two exclusion zones (禁止令): a school, active on school days 07:00–18:00, and a victim's
  home, always active;
* eight subjects across 严管 / 普管 / 宽管 with homes and one curfew, one phone each (device
  tokens kept in ``<data_dir>/demo-devices.json``, mode 0600, so a second run reuses them);
  their terms began 14 (严管), 24 (普管) or 60 (宽管) days before the first run, so the 严管
  subjects are due a night patrol that night and the others may be drawn;
* night patrol teams (:data:`PATROL_TEAMS`): one at 城关司法所, two at 东关司法所, each
  starting from its station and working 20:00–24:00.

Once seeded, the demo plans tonight's patrols for each station (:func:`plan_tonight`: a draft
is re-planned, a published plan kept) and prints each plan's stops per team with the curl
lines of its JSON, GeoJSON, CSV and printable sheet (the route map and a page per team).

The phones post their newest fix every ``tick_s`` (15 s) with real timestamps and accuracy
5–30 m. Most stay near home. 张某 drives out of the county and back every 20 minutes (a
``left_activity_area`` alert about 3 minutes after the start: strict confirms after 120 s);
王某 rides into the victim's-home zone (``entered_exclusion_zone``); 刘某's phone goes silent
after two minutes (``lost_contact`` once 严管's 60 minutes of silence have passed); 杨某's
phone sends a lone far-off spike every five minutes, which never alerts.

Every subject has its station's officer and supervisor as responsible officer and
supervisor (二级包保), so alerts reaching officers become tasks. Unless the operator set
``CM_POLICY_FILE``, the demo serves with its own policy overlay (:data:`DEMO_POLICY`, written
to ``<data_dir>/demo-policy.toml``, for the demo only): 严管 alerts due 120 s after detection,
escalation steps of 180 s and 300 s, 60 s of self-resolution grace for ``left_activity_area``.
张某's alert then opens a ``verify_alert`` task for ``dongguan-officer`` about four minutes in
and, unacknowledged, escalates to ``dongguan-head`` a minute later. The demo plays
``dongguan-officer`` once (:class:`ActingOfficer`, printed as ``[demo officer, simulated]``):
30 s after the first escalation it acknowledges that alert and confirms it as a minor breach,
so the legal ladder proposes 训诫 (reprimand), which stays pending for a person to decide.
Task changes (:class:`TaskWatch`) and proposals with their PDF and decision curl lines
(:class:`ProposalWatch`) are printed as they happen.

A second run reuses everything that exists: nothing is created twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import random
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp

from correction_monitor.migrations import migrate
from correction_monitor.service.bootstrap import create_officer
from correction_monitor.settings import Settings

__all__ = [
    "COUNTY_ADCODE",
    "COUNTY_CENTRE",
    "COUNTY_CODE",
    "DEMO_POLICY",
    "DEMO_POLICY_FILE",
    "DEVICES_FILE",
    "LOGINS",
    "PATROL_TEAMS",
    "PHONES",
    "ActingOfficer",
    "DemoApi",
    "DemoError",
    "DemoLogin",
    "DemoWorld",
    "PhonePlan",
    "PhoneStats",
    "ProposalWatch",
    "SeededSubject",
    "TaskWatch",
    "TonightPlan",
    "act_as_officer",
    "boundary_radii_m",
    "county_boundary",
    "county_today",
    "demo_policy",
    "fixes_for_tick",
    "follow_alerts",
    "follow_proposals",
    "follow_tasks",
    "offset_m",
    "plan_tonight",
    "run_demo",
    "run_phones",
    "seed",
]

COUNTY_CODE = "xx-county"
COUNTY_NAME = "XX县"
# Made up: no province has the code 99, so it can never collide with an imported DataV file.
COUNTY_ADCODE = "990121"
CITY_ADCODE = "990100"
COUNTY_CENTRE = (112.9, 28.2)  # (lon, lat) WGS-84
COUNTY_RADIUS_M = 15_000.0
BOUNDARY_VERTICES = 144
BOUNDARY_SEED = 20260101
TIMEZONE = "Asia/Shanghai"

STATIONS = (("xx-chengguan", "城关司法所"), ("xx-dongguan", "东关司法所"))
DEVICES_FILE = "demo-devices.json"
DEFAULT_TICK_S = 15.0
MAX_BUFFERED_FIXES = 1000  # the most one request may carry

# Where each station stands (metres east, north of the county centre): its patrol teams
# start and end their nights there.
STATION_M = {"xx-chengguan": (-1500.0, 300.0), "xx-dongguan": (2600.0, 800.0)}
# The demo's patrol teams (夜间巡查组): (station, name, visits a night), all working 20:00-24:00.
PATROL_TEAMS = (
    ("xx-chengguan", "城关巡查一组", 6),
    ("xx-dongguan", "东关巡查一组", 4),
    ("xx-dongguan", "东关巡查二组", 4),
)
PATROL_WINDOW = ("20:00", "00:00")
# How long before the seeding day each level's subjects began their terms. Patrols visit
# 严管 every 14 days from the term start, so those are due tonight (the last night of their
# window); 普管 (every 30) and 宽管 (every 90) are inside their windows and may be drawn.
TERM_STARTED_DAYS_AGO = {"strict": 14, "normal": 24, "lenient": 60}
# The term's last day, as before: far enough ahead for any demo.
TERM_END = date(2028, 8, 31)

ACTIVITY_AREA = "XX县 活动区域"
SCHOOL_ZONE = "XX县第一小学 (禁止令)"
VICTIM_ZONE = "被害人住所 (禁止令)"
SCHOOL_M = (-300.0, 700.0)  # metres east, north of the county centre
SCHOOL_RADIUS_M = 200.0
VICTIM_M = (-1100.0, 1900.0)
VICTIM_RADIUS_M = 300.0

# Metres per degree on a sphere of the Earth's mean radius: plenty for drawing a demo county.
_M_PER_DEG = 6_371_008.8 * math.pi / 180.0


def offset_m(east_m: float, north_m: float) -> tuple[float, float]:
    """The WGS-84 (lon, lat) lying ``east_m`` / ``north_m`` metres from the county centre.

    Parameters
    ----------
    east_m, north_m
        Offsets in metres (local flat approximation, good to well under 1 % over the county).

    Returns
    -------
    tuple of float
        (lon, lat) in degrees, rounded to 1e-7 (about 1 cm).

    Examples
    --------
    >>> offset_m(0.0, 0.0)
    (112.9, 28.2)
    """
    lon0, lat0 = COUNTY_CENTRE
    lon = lon0 + east_m / (_M_PER_DEG * math.cos(math.radians(lat0)))
    lat = lat0 + north_m / _M_PER_DEG
    return round(lon, 7), round(lat, 7)


def _boundary_radius_m(k: int, rng: random.Random) -> float:
    theta = 2.0 * math.pi * k / BOUNDARY_VERTICES
    wave = (
        0.12 * math.sin(3 * theta + 0.7)
        + 0.07 * math.sin(5 * theta + 2.1)
        + 0.04 * math.sin(8 * theta + 0.3)
    )
    return COUNTY_RADIUS_M * (1.0 + wave) * (1.0 + rng.uniform(-0.02, 0.02))


def boundary_radii_m() -> list[float]:
    """Distance (metres) from the centre to each boundary vertex, vertex ``k`` lying at
    ``2πk / 144`` radians counter-clockwise from east."""
    rng = random.Random(BOUNDARY_SEED)
    return [_boundary_radius_m(k, rng) for k in range(BOUNDARY_VERTICES)]


def county_boundary() -> dict[str, Any]:
    """The demo county's boundary: a GeoJSON Polygon in WGS-84, drawn here.

    Every vertex lies on its own ray from the centre at a positive distance, so the polygon is
    star-shaped about the centre and therefore simple (valid) whatever the radii. The radii
    (about 11–19 km) are three sinusoids plus ±2 % seeded noise: deterministic, irregular
    enough to look like a county, and no real boundary.

    Returns
    -------
    dict
        ``{"type": "Polygon", "coordinates": [ring]}``, counter-clockwise, 144 vertices plus
        the closing one.
    """
    ring = []
    for k, radius in enumerate(boundary_radii_m()):
        theta = 2.0 * math.pi * k / BOUNDARY_VERTICES
        lon, lat = offset_m(radius * math.cos(theta), radius * math.sin(theta))
        ring.append([lon, lat])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


# --- the cast ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoLogin:
    """A demo officer account (demo only: the password is printed on the console)."""

    username: str
    role: str
    org_code: str
    label: str

    @property
    def password(self) -> str:
        """``demo-<username>-2026``."""
        return f"demo-{self.username}-2026"


LOGINS = (
    DemoLogin("admin", "admin", COUNTY_CODE, "系统管理员 administrator"),
    DemoLogin("county", "county_admin", COUNTY_CODE, "县局 county administrator"),
    DemoLogin("chengguan-officer", "officer", "xx-chengguan", "城关司法所 officer"),
    DemoLogin("chengguan-head", "supervisor", "xx-chengguan", "城关司法所 所长 supervisor"),
    DemoLogin("dongguan-officer", "officer", "xx-dongguan", "东关司法所 officer"),
    DemoLogin("dongguan-head", "supervisor", "xx-dongguan", "东关司法所 所长 supervisor"),
    DemoLogin("auditor", "auditor", COUNTY_CODE, "auditor (read-only)"),
)
_STATION_STAFF = {
    "xx-chengguan": ("chengguan-officer", "chengguan-head"),
    "xx-dongguan": ("dongguan-officer", "dongguan-head"),
}


def login_of(username: str) -> DemoLogin:
    """The demo login called ``username``."""
    return next(x for x in LOGINS if x.username == username)


# The officer the demo plays (labelled as a simulation wherever it acts): 东关司法所's, whose
# subject 张某 leaves the county first.
ACTING_OFFICER = "dongguan-officer"

Waypoint = tuple[float, float, float]  # (seconds into the cycle, metres east, metres north)


@dataclass(frozen=True, slots=True)
class PhonePlan:
    """One demo subject and how their phone behaves.

    ``route`` holds waypoints relative to home, repeated every ``route[-1][0]`` seconds
    (a single waypoint: the phone stays home). The phone reports every ``every_ticks`` ticks,
    stops for good ``silent_after_s`` seconds into the run, and every ``spike_every_ticks``
    ticks reports one position ``spike_m`` away from the truth.
    """

    key: str
    name: str
    station: str
    level: str
    category: str
    home_m: tuple[float, float]
    story: str
    route: tuple[Waypoint, ...] = ((0.0, 0.0, 0.0),)
    every_ticks: int = 1
    silent_after_s: float | None = None
    spike_every_ticks: int | None = None
    spike_m: tuple[float, float] = (7000.0, 3000.0)
    curfew: tuple[str, str] | None = None
    exclusions: tuple[str, ...] = ()
    # How the subject answers check-ins: "answers" (a good face match), "misses" (never
    # answers: missed_checkin), or "low_face" (a poor face match: needs an officer's review).
    checkins: str = "answers"

    def position_m(self, elapsed_s: float) -> tuple[float, float]:
        """Where the subject truly is ``elapsed_s`` seconds into the run (metres from the
        county centre), interpolating the route linearly."""
        east, north = self.home_m
        period = self.route[-1][0]
        if len(self.route) == 1 or period <= 0:
            return east + self.route[0][1], north + self.route[0][2]
        t = elapsed_s % period
        for (t0, e0, n0), (t1, e1, n1) in zip(self.route, self.route[1:], strict=False):
            if t0 <= t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return east + e0 + f * (e1 - e0), north + n0 + f * (n1 - n0)
        return east + self.route[-1][1], north + self.route[-1][2]


def _wanderer_home() -> tuple[float, float]:
    # Vertex 0 lies due east of the centre: live 800 m inside it, drive 3 km beyond it.
    return boundary_radii_m()[0] - 800.0, 0.0


_WALKER_HOME = (-2000.0, 1500.0)
_TO_VICTIM = (VICTIM_M[0] - _WALKER_HOME[0], VICTIM_M[1] - _WALKER_HOME[1])

PHONES = (
    PhonePlan(
        key="wanderer",
        name="张某",
        station="xx-dongguan",
        level="strict",
        category="parole",
        home_m=_wanderer_home(),
        story="drives out of the county every 20 min (left_activity_area after ~3 min)",
        # 25 m/s on the road east: out by ~1 min, outside for ~7 min, home by 12.5 min.
        route=(
            (0.0, 0.0, 0.0),
            (30.0, 0.0, 0.0),
            (182.0, 3800.0, 0.0),
            (600.0, 3800.0, 0.0),
            (752.0, 0.0, 0.0),
            (1200.0, 0.0, 0.0),
        ),
    ),
    PhonePlan(
        key="walker",
        name="王某",
        station="xx-chengguan",
        level="strict",
        category="probation",
        home_m=_WALKER_HOME,
        story="rides into the victim's-home zone every 20 min (entered_exclusion_zone)",
        # An e-bike at ~6 m/s to the victim's home, six minutes there, back.
        route=(
            (0.0, 0.0, 0.0),
            (30.0, 0.0, 0.0),
            (194.0, _TO_VICTIM[0], _TO_VICTIM[1]),
            (554.0, _TO_VICTIM[0], _TO_VICTIM[1]),
            (718.0, 0.0, 0.0),
            (1200.0, 0.0, 0.0),
        ),
        exclusions=(SCHOOL_ZONE, VICTIM_ZONE),
    ),
    PhonePlan(
        key="silent",
        name="刘某",
        station="xx-dongguan",
        level="strict",
        category="control",
        home_m=(3000.0, -2500.0),
        story="phone goes silent after 2 min (lost_contact after 60 min of silence)",
        silent_after_s=120.0,
    ),
    PhonePlan(
        key="curfew",
        name="陈某",
        station="xx-dongguan",
        level="normal",
        category="probation",
        home_m=(1200.0, 2200.0),
        story="curfew 22:00-06:00, keeps it; face check-ins score low (needs_review)",
        curfew=("22:00", "06:00"),
        checkins="low_face",
    ),
    PhonePlan(
        key="spiker",
        name="杨某",
        station="xx-chengguan",
        level="normal",
        category="medical_parole",
        home_m=(-800.0, -1800.0),
        story="a lone GPS spike 7.6 km away every 5 min (flagged, never alerts)",
        spike_every_ticks=20,
    ),
    PhonePlan(
        key="errands",
        name="赵某",
        station="xx-dongguan",
        level="normal",
        category="probation",
        home_m=(4200.0, 600.0),
        story="walks to the market and back; never answers check-ins (missed_checkin)",
        checkins="misses",
        route=(
            (0.0, 0.0, 0.0),
            (60.0, 0.0, 0.0),
            (974.0, 1000.0, 800.0),
            (1274.0, 1000.0, 800.0),
            (2188.0, 0.0, 0.0),
            (2400.0, 0.0, 0.0),
        ),
    ),
    PhonePlan(
        key="lenient-1",
        name="黄某",
        station="xx-chengguan",
        level="lenient",
        category="probation",
        home_m=(-3500.0, -600.0),
        story="宽管: one fix every 5 min, at home",
        every_ticks=20,
    ),
    PhonePlan(
        key="lenient-2",
        name="周某",
        station="xx-dongguan",
        level="lenient",
        category="control",
        home_m=(2500.0, 4000.0),
        story="宽管: one fix every 5 min, at home",
        every_ticks=20,
    ),
)


# --- talking to the service -------------------------------------------------------------------


class DemoError(RuntimeError):
    """The service refused a demo request; the message carries its status and answer."""


class DemoApi:
    """The service's HTTP API as the demo uses it: JSON in, JSON out, refusals raised.

    Parameters
    ----------
    session
        An open client session (a test client's ``session`` works as well).
    base_url
        Where the service answers, e.g. ``http://127.0.0.1:8080``.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> tuple[int, Any]:
        """Send one request; returns (status, parsed JSON or None).

        Raises
        ------
        DemoError
            When the status is not in ``ok``.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base_url + path, json=body, headers=headers
        ) as resp:
            text = await resp.text()
            if resp.status not in ok:
                raise DemoError(f"{method} {path} answered {resp.status}: {text[:500]}")
            return resp.status, (json.loads(text) if text else None)

    async def login(self, username: str, password: str) -> str | None:
        """An officer bearer token, or None when the credentials are refused (401)."""
        status, answer = await self.call(
            "POST",
            "/api/v1/auth/token",
            body={"username": username, "password": password},
            ok=(200, 401),
        )
        return str(answer["access_token"]) if status == 200 else None


# --- seeding ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeededSubject:
    """A demo subject as stored, with its phone's credentials."""

    plan: PhonePlan
    subject_id: int
    device_id: int
    token: str
    osmand_id: str


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """What :func:`seed` found or created; ``patrol_teams`` maps each demo team's name to
    its id."""

    admin_token: str
    area_id: int
    zone_ids: Mapping[str, int]
    subjects: tuple[SeededSubject, ...]
    created: tuple[str, ...]
    devices_file: Path
    patrol_teams: Mapping[str, int] = field(default_factory=dict)


async def _officer_ids(database_url: str, usernames: Sequence[str]) -> dict[str, int]:
    """Ids of those of ``usernames`` that exist. No API lists officers: they are read through
    the officers adapter the API itself uses (a login would cost an argon2 verification)."""
    from correction_monitor.adapters import officers
    from correction_monitor.adapters.db import create_pool
    from correction_monitor.adapters.errors import NotFound

    found = {}
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            for username in usernames:
                with contextlib.suppress(NotFound):
                    found[username] = (await officers.get_by_username(conn, username)).id
    finally:
        await pool.close()
    return found


async def _create_login(database_url: str, login: DemoLogin, created: list[str]) -> None:
    try:
        await create_officer(
            database_url,
            username=login.username,
            password=login.password,
            role=login.role,
            org_code=login.org_code,
            org_name=COUNTY_NAME if login.org_code == COUNTY_CODE else None,
            timezone=TIMEZONE,
        )
    except ValueError as exc:
        raise DemoError(f"cannot create demo officer {login.username!r}: {exc}") from exc
    created.append(f"officer {login.username}")


async def _admin_token(api: DemoApi, database_url: str, created: list[str]) -> str:
    admin = LOGINS[0]
    token = await api.login(admin.username, admin.password)
    if token is None:
        if admin.username in await _officer_ids(database_url, [admin.username]):
            raise DemoError(
                f"this database already has an officer {admin.username!r} with another "
                f"password: run the demo on a fresh CM_DATA_DIR or database"
            )
        await _create_login(database_url, admin, created)
        token = await api.login(admin.username, admin.password)
    if token is None:
        raise DemoError(f"demo officer {admin.username!r} was created but cannot log in")
    return token


def _circle(name: str, centre_m: tuple[float, float], radius_m: float) -> dict[str, Any]:
    lon, lat = offset_m(*centre_m)
    return {
        "name": name,
        "kind": "exclusion",
        "org_unit": COUNTY_CODE,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "radius_m": radius_m,
        "crs": "wgs84",
    }


def _fence_requests() -> list[dict[str, Any]]:
    school = _circle(SCHOOL_ZONE, SCHOOL_M, SCHOOL_RADIUS_M)
    # Weekday school hours, in the station's time zone (Asia/Shanghai).
    school["schedule"] = {"windows": [{"days": [1, 2, 3, 4, 5], "start": "07:00", "end": "18:00"}]}
    area = {
        "name": ACTIVITY_AREA,
        "kind": "activity_area",
        "org_unit": COUNTY_CODE,
        "adcodes": [COUNTY_ADCODE],
        "crs": "wgs84",
    }
    return [area, school, _circle(VICTIM_ZONE, VICTIM_M, VICTIM_RADIUS_M)]


def _boundary_collection() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "adcode": COUNTY_ADCODE,
                    "name": COUNTY_NAME,
                    "level": "district",
                    "parent": {"adcode": CITY_ADCODE},
                },
                "geometry": county_boundary(),
            }
        ],
    }


def county_today() -> date:
    """Today in the county (Asia/Shanghai): the night the demo plans patrols for."""
    return datetime.now(ZoneInfo(TIMEZONE)).date()


def _subject_request(
    plan: PhonePlan,
    area_id: int,
    zone_ids: Mapping[str, int],
    staff: Mapping[str, int],
    today: date,
) -> dict[str, Any]:
    officer, supervisor = _STATION_STAFF[plan.station]
    lon, lat = offset_m(*plan.home_m)
    term_start = today - timedelta(days=TERM_STARTED_DAYS_AGO[plan.level])
    body: dict[str, Any] = {
        "name": plan.name,
        "org_unit": plan.station,
        "supervision_level": plan.level,
        "category": plan.category,
        "term_start": term_start.isoformat(),
        "term_end": TERM_END.isoformat(),
        "activity_area_id": area_id,
        "exclusion_zone_ids": [zone_ids[z] for z in plan.exclusions],
        "home": {"lat": lat, "lon": lon, "crs": "wgs84"},
        "responsible_officer_id": staff[officer],
        "responsible_supervisor_id": staff[supervisor],
    }
    if plan.curfew is not None:
        body["curfew"] = {"start": plan.curfew[0], "end": plan.curfew[1]}
    return body


def _read_devices(path: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    subjects = raw.get("subjects") if isinstance(raw, dict) else None
    return subjects if isinstance(subjects, dict) else {}


def _write_devices(path: Path, devices: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the device tokens readable by this user only (they let anyone post fixes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(
            {
                "about": "device tokens of the demo phones (demo data only)",
                "subjects": devices,
            },
            out,
            ensure_ascii=False,
            indent=2,
        )
    os.chmod(tmp, 0o600)  # an existing file keeps its old mode through O_CREAT
    os.replace(tmp, path)


async def _ensure_device(
    api: DemoApi,
    admin: str,
    plan: PhonePlan,
    subject_id: int,
    known: Mapping[str, Any] | None,
    created: list[str],
) -> SeededSubject:
    _, listed = await api.call("GET", f"/api/v1/subjects/{subject_id}/devices", token=admin)
    active = [d for d in listed["devices"] if d["revoked_at"] is None]
    if known is not None and known.get("subject_id") == subject_id:
        kept = [d for d in active if d["device_id"] == known.get("device_id")]
        # An empty batch proves the token still opens the door without storing anything.
        status, _ = await api.call(
            "POST", "/api/v1/fixes", body={"fixes": []}, token=known["token"], ok=(200, 401)
        )
        if kept and status == 200:
            return SeededSubject(
                plan, subject_id, known["device_id"], known["token"], known["osmand_id"]
            )
    # The saved token is lost or stale: retire the subject's phones and enrol a fresh one.
    for device in active:
        await api.call(
            "DELETE",
            f"/api/v1/subjects/{subject_id}/devices/{device['device_id']}",
            token=admin,
            ok=(204, 404),
        )
    _, dev = await api.call(
        "POST", f"/api/v1/subjects/{subject_id}/devices", body={"platform": "demo"}, token=admin
    )
    created.append(f"device for {plan.name}")
    return SeededSubject(plan, subject_id, dev["device_id"], dev["token"], dev["osmand_id"])


async def seed(
    api: DemoApi,
    database_url: str,
    data_dir: Path,
    phones: Sequence[PhonePlan] = PHONES,
) -> DemoWorld:
    """Create the demo county through the API, reusing whatever already exists.

    Officers are created with the same code as ``correction-monitor admin create-officer``
    (no API creates officers); everything else goes through the HTTP API with the
    administrator's token, so it is validated like any officer's input.

    Parameters
    ----------
    api
        The running service.
    database_url
        The service's database, for creating the demo officers.
    data_dir
        Where ``demo-devices.json`` (the phones' tokens, mode 0600) is kept.
    phones
        The subjects to seed, :data:`PHONES` by default.

    Returns
    -------
    DemoWorld
        Ids and credentials; ``created`` names what this call had to create (empty on a
        second run).
    """
    created: list[str] = []
    admin = await _admin_token(api, database_url, created)

    _, units = await api.call("GET", "/api/v1/org-units", token=admin)
    have_units = {u["code"] for u in units["org_units"]}
    for code, name in STATIONS:
        if code not in have_units:
            await api.call(
                "POST",
                "/api/v1/org-units",
                body={"code": code, "name": name, "parent_code": COUNTY_CODE, "timezone": TIMEZONE},
                token=admin,
            )
            created.append(f"org unit {code}")
    existing = await _officer_ids(database_url, [login.username for login in LOGINS])
    for login in LOGINS[1:]:
        if login.username not in existing:
            await _create_login(database_url, login, created)

    _, areas = await api.call("GET", "/api/v1/boundaries", token=admin)
    if COUNTY_ADCODE not in {a["adcode"] for a in areas["areas"]}:
        await api.call(
            "POST", "/api/v1/boundaries/import?crs=wgs84", body=_boundary_collection(), token=admin
        )
        created.append(f"boundary {COUNTY_ADCODE}")

    _, fences = await api.call("GET", "/api/v1/geofences", token=admin)
    fence_ids = {(f["name"], f["kind"]): f["id"] for f in fences["geofences"]}
    for request in _fence_requests():
        if (request["name"], request["kind"]) not in fence_ids:
            _, fence = await api.call("POST", "/api/v1/geofences", body=request, token=admin)
            fence_ids[(request["name"], request["kind"])] = fence["id"]
            created.append(f"geofence {request['name']}")
    area_id = fence_ids[(ACTIVITY_AREA, "activity_area")]
    zone_ids = {name: fence_ids[(name, "exclusion")] for name in (SCHOOL_ZONE, VICTIM_ZONE)}

    staff = await _officer_ids(
        database_url, [name for pair in _STATION_STAFF.values() for name in pair]
    )
    assert len(staff) == 2 * len(_STATION_STAFF), "the station staff were created above"
    subject_ids: dict[tuple[str, str], int] = {}
    for offset in itertools.count(0, 1000):
        _, page = await api.call("GET", f"/api/v1/subjects?limit=1000&offset={offset}", token=admin)
        subject_ids.update({(s["name"], s["org_unit"]): s["id"] for s in page["subjects"]})
        if len(page["subjects"]) < 1000:
            break
    devices_path = data_dir / DEVICES_FILE
    known = _read_devices(devices_path)
    seeded = []
    for plan in phones:
        subject_id = subject_ids.get((plan.name, plan.station))
        if subject_id is None:
            _, subject = await api.call(
                "POST",
                "/api/v1/subjects",
                body=_subject_request(plan, area_id, zone_ids, staff, county_today()),
                token=admin,
            )
            subject_id = int(subject["id"])
            created.append(f"subject {plan.name}")
        seeded.append(
            await _ensure_device(api, admin, plan, subject_id, known.get(plan.key), created)
        )
    _write_devices(
        devices_path,
        {
            s.plan.key: {
                "name": s.plan.name,
                "subject_id": s.subject_id,
                "device_id": s.device_id,
                "token": s.token,
                "osmand_id": s.osmand_id,
            }
            for s in seeded
        },
    )
    teams = await _ensure_patrol_teams(api, admin, created)
    return DemoWorld(admin, area_id, zone_ids, tuple(seeded), tuple(created), devices_path, teams)


def _team_request(station: str, name: str, capacity: int) -> dict[str, Any]:
    lon, lat = offset_m(*STATION_M[station])
    return {
        "org_unit": station,
        "name": name,
        "start": {"lat": lat, "lon": lon, "crs": "wgs84"},
        "capacity": capacity,
        "window": {"start": PATROL_WINDOW[0], "end": PATROL_WINDOW[1]},
    }


async def _ensure_patrol_teams(api: DemoApi, admin: str, created: list[str]) -> dict[str, int]:
    """The demo's patrol teams (:data:`PATROL_TEAMS`) by name, each created once."""
    ids: dict[str, int] = {}
    for station, _ in STATIONS:
        _, listed = await api.call("GET", f"/api/v1/patrol-teams?org_unit={station}", token=admin)
        have = {t["name"]: t["id"] for t in listed["teams"] if t["org_unit"] == station}
        for code, name, capacity in PATROL_TEAMS:
            if code != station:
                continue
            if name not in have:
                _, team = await api.call(
                    "POST",
                    "/api/v1/patrol-teams",
                    body=_team_request(station, name, capacity),
                    token=admin,
                )
                have[name] = team["id"]
                created.append(f"patrol team {name}")
            ids[name] = int(have[name])
    return ids


# --- tonight's patrols ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TonightPlan:
    """A station's plan for tonight as the demo made (or found) it: ``stops`` holds
    (team name, stops) in the plan's order; ``problem`` says why there is no plan."""

    station: str
    station_name: str
    night: date
    plan_id: int | None
    status: str
    stops: tuple[tuple[str, int], ...] = ()
    unassigned: int = 0
    problem: str | None = None


def _tonight_of(
    station: str, name: str, night: date, plan: Mapping[str, Any], teams: Mapping[int, str]
) -> TonightPlan:
    """The plan's stops per team: its routes in order, then the station's demo teams it
    gave no route (none of its stops)."""
    stops = [
        (teams.get(r["team_id"], f"team {r['team_id']}"), len(r["stops"])) for r in plan["routes"]
    ]
    routed = {team for team, _ in stops}
    stops += [(t, 0) for code, t, _ in PATROL_TEAMS if code == station and t not in routed]
    return TonightPlan(
        station, name, night, int(plan["id"]), plan["status"], tuple(stops), len(plan["unassigned"])
    )


async def plan_tonight(
    api: DemoApi, token: str, teams: Mapping[str, int], night: date | None = None
) -> tuple[TonightPlan, ...]:
    """Plan ``night`` (the county's today by default) for each station through
    ``POST /api/v1/patrol-plans``: a draft made earlier (by the demo or the nightly job) is
    replaced, a published plan is kept as it is (found through ``GET /api/v1/patrol-plans``).
    A station the service refuses to plan gets a :class:`TonightPlan` saying why."""
    night = night or county_today()
    names = {team_id: name for name, team_id in teams.items()}
    plans = []
    for code, name in STATIONS:
        status, answer = await api.call(
            "POST",
            "/api/v1/patrol-plans",
            body={"org_unit": code, "date": night.isoformat()},
            token=token,
            ok=(201, 400, 409),
        )
        if status == 201:
            plans.append(_tonight_of(code, name, night, answer, names))
            continue
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        if error.get("code") == "plan_published":
            query = urlencode({"org_unit": code, "date": night.isoformat()})
            _, found = await api.call("GET", f"/api/v1/patrol-plans?{query}", token=token)
            if found["plans"]:
                plans.append(_tonight_of(code, name, night, found["plans"][0], names))
                continue
        problem = f"{error.get('code', status)}: {error.get('message', '')}".strip()
        plans.append(TonightPlan(code, name, night, None, "none", problem=problem))
    return tuple(plans)


# --- simulated phones -------------------------------------------------------------------------


@dataclass(slots=True)
class PhoneStats:
    """What the simulated phones sent and how the service answered, in fixes (requests for
    ``failed_requests``)."""

    ticks: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed_requests: int = 0
    by_phone: dict[str, int] = field(default_factory=dict)


def fixes_for_tick(plan: PhonePlan, tick: int, elapsed_s: float, now: datetime) -> list[Any]:
    """The fixes ``plan``'s phone produces at ``tick`` (``elapsed_s`` seconds into the run,
    stamped ``now``): none, or one native fix dict with accuracy 5–30 metres."""
    if plan.silent_after_s is not None and elapsed_s >= plan.silent_after_s:
        return []
    if tick % plan.every_ticks:
        return []
    # Seeded by phone and tick (a str seed hashes the same in every process): reproducible.
    rng = random.Random(f"{plan.key}:{tick}")
    east, north = plan.position_m(elapsed_s)
    spike = plan.spike_every_ticks
    if spike is not None and tick % spike == spike // 2:
        east, north = east + plan.spike_m[0], north + plan.spike_m[1]
    # Noise stays well inside every fence margin used here (home 150 m, zones 200-300 m).
    east += max(-20.0, min(20.0, rng.gauss(0.0, 7.0)))
    north += max(-20.0, min(20.0, rng.gauss(0.0, 7.0)))
    lon, lat = offset_m(east, north)
    return [
        {
            "id": f"{plan.key}-{round(now.timestamp() * 1000)}",
            "ts": now.isoformat(),
            "lat": lat,
            "lon": lon,
            "accuracy_m": round(rng.uniform(5.0, 30.0), 1),
            "provider": "gps",
            "battery": max(5, 95 - tick // 40),
        }
    ]


async def _post(api: DemoApi, phone: SeededSubject, pending: list[Any], stats: PhoneStats) -> None:
    batch = pending[:MAX_BUFFERED_FIXES]
    try:
        _, answer = await api.call(
            "POST", "/api/v1/fixes", body={"fixes": batch}, token=phone.token
        )
    except (DemoError, aiohttp.ClientError, TimeoutError):
        # Like a real app: keep the fixes and try again next time (the server deduplicates).
        stats.failed_requests += 1
        return
    del pending[: len(batch)]
    stats.accepted += answer["accepted"]
    stats.duplicates += answer["duplicates"]
    stats.rejected += len(answer["rejected"])
    stats.by_phone[phone.plan.key] = stats.by_phone.get(phone.plan.key, 0) + answer["accepted"]


async def run_phones(
    api: DemoApi,
    phones: Sequence[SeededSubject],
    *,
    tick_s: float = DEFAULT_TICK_S,
    ticks: int | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    stats: PhoneStats | None = None,
) -> PhoneStats:
    """Run the simulated phones: every ``tick_s`` seconds each posts its newest fix(es).

    Parameters
    ----------
    api
        The running service.
    phones
        Seeded subjects with their device tokens.
    tick_s
        Seconds between ticks.
    ticks
        Stop after this many ticks; None runs until cancelled.
    clock, sleep
        The time source (UTC) and the wait between ticks; tests pass a simulated pair so
        minutes of phone behaviour run in a moment.
    stats
        Counters to update (so a caller can read them after cancelling); a new one if None.

    Returns
    -------
    PhoneStats
        Totals over the run.
    """
    stats = stats if stats is not None else PhoneStats()
    started = clock()
    pending: dict[str, list[Any]] = {p.plan.key: [] for p in phones}
    tick = 0
    while ticks is None or tick < ticks:
        now = clock()
        elapsed = (now - started).total_seconds()
        posts = []
        for phone in phones:
            new = fixes_for_tick(phone.plan, tick, elapsed, now)
            stats.sent += len(new)
            queue = pending[phone.plan.key]
            queue.extend(new)
            del queue[:-MAX_BUFFERED_FIXES]  # a full buffer drops its oldest, as apps do
            if queue:
                posts.append(_post(api, phone, queue, stats))
        await asyncio.gather(*posts)
        stats.ticks += 1
        tick += 1
        if ticks is None or tick < ticks:
            await sleep(max(0.0, tick_s - (clock() - now).total_seconds()))
    return stats


# --- check-ins ---------------------------------------------------------------------------------

CHALLENGE_EVERY_S = 300.0
CHALLENGE_ANSWER_S = 120
FACE_SCORES = {"answers": 0.94, "low_face": 0.52}


def checkin_answer(plan: PhonePlan, elapsed_s: float, now: datetime) -> dict[str, Any] | None:
    """What ``plan``'s app sends to answer an open check-in ``elapsed_s`` seconds into the
    run: where the subject is, with the face match of its behaviour; None when it does not
    answer (a phone that misses check-ins, or one gone silent)."""
    if plan.silent_after_s is not None and elapsed_s >= plan.silent_after_s:
        return None
    score = FACE_SCORES.get(plan.checkins)
    if score is None:
        return None
    lon, lat = offset_m(*plan.position_m(elapsed_s))
    return {
        "ts": now.isoformat(),
        "lat": lat,
        "lon": lon,
        "accuracy_m": 12.0,
        "face": {"score": score, "liveness": True, "vendor": "demo"},
    }


async def answer_checkins(
    api: DemoApi, phone: SeededSubject, elapsed_s: float, now: datetime, out: TextIO | None
) -> int:
    """Answer ``phone``'s open check-ins as its plan says; returns how many were answered."""
    answered = 0
    try:
        _, listed = await api.call("GET", "/api/v1/me/checkins", token=phone.token)
        for checkin in listed["checkins"]:
            if checkin["status"] != "open":
                continue
            body = checkin_answer(phone.plan, elapsed_s, now)
            if body is None:
                continue
            status, result = await api.call(
                "POST",
                f"/api/v1/me/checkins/{checkin['id']}",
                body=body,
                token=phone.token,
                ok=(200, 409),
            )
            if status == 200:
                answered += 1
                if out is not None:
                    reasons = ", ".join(result["reasons"]) or "-"
                    print(
                        f"[check-in] #{result['id']} {result['kind']} {phone.plan.name} "
                        f"{result['status']} ({reasons})",
                        file=out,
                        flush=True,
                    )
    except (DemoError, aiohttp.ClientError, TimeoutError):
        pass  # like a real app: try again at the next poll
    return answered


async def run_checkins(
    api: DemoApi,
    phones: Sequence[SeededSubject],
    officer: DemoLogin,
    out: TextIO | None,
    *,
    poll_s: float = DEFAULT_TICK_S,
    challenge_every_s: float = CHALLENGE_EVERY_S,
) -> None:
    """Until cancelled: every ``challenge_every_s`` the officer issues each subject a face
    challenge to answer within two minutes, and every ``poll_s`` the apps answer whatever
    check-in is open (scheduled windows of their level included) as their plans say."""
    started = datetime.now(UTC)
    token: str | None = None
    last_round: float | None = None
    while True:
        now = datetime.now(UTC)
        elapsed = (now - started).total_seconds()
        if last_round is None or elapsed - last_round >= challenge_every_s:
            try:
                token = token or await api.login(officer.username, officer.password)
                for phone in phones:
                    await api.call(
                        "POST",
                        f"/api/v1/subjects/{phone.subject_id}/challenges",
                        body={"answer_within_s": CHALLENGE_ANSWER_S},
                        token=token,
                    )
                last_round = elapsed
            except (DemoError, aiohttp.ClientError, TimeoutError):
                token = None  # expired or the service is busy: next poll
        await asyncio.gather(*(answer_checkins(api, p, elapsed, now, out) for p in phones))
        await asyncio.sleep(poll_s)


def _alert_line(alert: Mapping[str, Any], change: str, names: Mapping[int, str]) -> str:
    who = names.get(alert["subject_id"], f"subject {alert['subject_id']}")
    ended = f" ended {alert['ended_at']}" if alert["ended_at"] else ""
    return (
        f"[alert {change}] #{alert['id']} {alert['type']} {who} "
        f"started {alert['started_at']}{ended} ({alert['status']})"
    )


async def follow_alerts(
    api: DemoApi,
    login: DemoLogin,
    names: Mapping[int, str],
    out: TextIO,
    *,
    interval_s: float = 3.0,
) -> None:
    """Print alerts as they open, end, or are acknowledged or resolved, until cancelled.

    Polls ``GET /api/v1/alerts`` every ``interval_s`` seconds rather than holding the SSE
    feed open, so stopping the demo never waits on a long-lived request.
    """
    seen: dict[int, tuple[str, str | None]] = {}
    token: str | None = None
    while True:
        try:
            if token is None:
                token = await api.login(login.username, login.password)
            status, answer = await api.call(
                "GET", "/api/v1/alerts?limit=5000", token=token, ok=(200, 401)
            )
            if status == 401:
                token = None  # expired: log in again next round
            else:
                for alert in sorted(answer["alerts"], key=lambda a: a["id"]):
                    now = (alert["status"], alert["ended_at"])
                    before = seen.get(alert["id"])
                    if before == now:
                        continue
                    if before is None:
                        change = "ended" if alert["ended_at"] else alert["status"]
                    elif before[1] is None and now[1] is not None:
                        change = "ended"
                    else:
                        change = alert["status"]
                    seen[alert["id"]] = now
                    print(_alert_line(alert, change, names), file=out, flush=True)
        except (aiohttp.ClientError, TimeoutError, DemoError):
            token = None
        await asyncio.sleep(interval_s)


# --- tasks, the demo's acting officer, proposals ------------------------------------------------

DEMO_POLICY_FILE = "demo-policy.toml"
# Only the keys that differ from the shipped policy (policy/default.toml).
DEMO_POLICY = """\
# The demo's policy overlay, for the demo only: `correction-monitor demo` writes it into its
# data directory when CM_POLICY_FILE is not set, so that an escalation happens within minutes.
# The real times (15 minutes to 4 hours) are in correction_monitor/policy/default.toml.

[levels.strict]
# A strict (严管) subject's high-severity alert must be acknowledged 2 minutes after detection.
ack_sla_high_s = 120

[tasks]
# Missed at the officer: the supervisor has 3 minutes, then the county 5.
escalation_sla_s = [180, 300]

[self_resolution]
# A subject outside the activity area has 60 s to come back before officers are summoned.
left_activity_area = 60
"""

# What the demo's simulated officer writes when confirming a breach (zh-CN, then English).
ACTING_NOTE = (
    "演示（模拟民警操作）：已电话核实，{name}承认{what}，已责令立即改正；情节轻微。"
    " Demo (simulated officer): checked by phone, a minor breach."
)
ACTING_AFTER_S = 30.0


def demo_policy(settings: Settings) -> tuple[Settings, Path | None]:
    """``settings`` with the demo's policy overlay (:data:`DEMO_POLICY`, written to
    ``<data_dir>/demo-policy.toml``), unless the operator chose a policy file
    (``CM_POLICY_FILE``), which is then left alone.

    Returns
    -------
    tuple
        The settings to serve with, and the overlay's path (None when not applied).
    """
    if settings.policy_file is not None:
        return settings, None
    path = Path(settings.data_dir) / DEMO_POLICY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_POLICY, encoding="utf-8")
    return settings.model_copy(update={"policy_file": path}), path


def _demo_policy_line(path: Path) -> str:
    from correction_monitor.policy import load_policy

    policy = load_policy(path)
    first, second = policy.tasks.escalation_sla_s
    sla = policy.level("strict").ack_sla_high_s
    return (
        f"demo policy: {path} (严管 high-severity alerts due {sla:.0f} s"
        f" after detection, escalation steps {first:.0f} s / {second:.0f} s, left_activity_area"
        f" grace {policy.self_resolution('left_activity_area'):.0f} s), for the demo only"
    )


def _local_time(text: str | None, today: date | None = None) -> str:
    """An API instant as a wall-clock time in the county (Asia/Shanghai), with its date
    when that is not ``today`` (the county's today by default)."""
    if not text:
        return "-"
    zone = ZoneInfo(TIMEZONE)
    when = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(zone)
    if when.date() != (today or datetime.now(zone).date()):
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return when.strftime("%H:%M:%S")


def _measure_label(proposal: Mapping[str, Any]) -> str:
    from correction_monitor.domain.ladder import LEVEL_LABELS, MEASURE_LABELS, Measure
    from correction_monitor.domain.models import SupervisionLevel

    try:
        zh, en = MEASURE_LABELS[Measure(proposal["measure"])]
    except ValueError:
        return str(proposal["measure"])
    label = f"{zh} ({en})"
    if proposal.get("proposed_level"):
        label += f" → {LEVEL_LABELS[SupervisionLevel(proposal['proposed_level'])]}"
    return label


class _Session:
    """One demo login's token, taken when first needed and again after it expires."""

    def __init__(self, api: DemoApi, login: DemoLogin) -> None:
        self.api = api
        self.login = login
        self.token: str | None = None

    async def get(self, path: str) -> Any:
        """The JSON answer of ``GET path``; None when the token was refused (it is taken
        again next time)."""
        if self.token is None:
            self.token = await self.api.login(self.login.username, self.login.password)
            if self.token is None:
                raise DemoError(f"demo officer {self.login.username!r} cannot log in")
        status, answer = await self.api.call("GET", path, token=self.token, ok=(200, 401))
        if status == 401:
            self.token = None
            return None
        return answer

    async def post(self, path: str, body: Any = None) -> Any:
        """The JSON answer of ``POST path`` (a token is taken first when needed)."""
        if self.token is None:
            self.token = await self.api.login(self.login.username, self.login.password)
            if self.token is None:
                raise DemoError(f"demo officer {self.login.username!r} cannot log in")
        _, answer = await self.api.call("POST", path, body=body, token=self.token)
        return answer


class TaskWatch:
    """Prints the demo subjects' tasks as they open, escalate, miss their last SLA or are
    done, read through ``GET /api/v1/tasks?subject_id=`` as ``login``.

    The first :meth:`poll` prints the open tasks it finds (done ones are history); later
    polls print every change since the poll before.
    """

    def __init__(
        self, api: DemoApi, login: DemoLogin, names: Mapping[int, str], out: TextIO
    ) -> None:
        self.session = _Session(api, login)
        self.names = names
        self.out = out
        self.seen: dict[int, tuple[str, int, int | None, str | None]] = {}
        self.officers: dict[int, str] = {}
        self.first = True

    def _who(self, officer_id: int | None) -> str:
        if officer_id is None:
            return "(unassigned: the station's list)"
        return self.officers.get(officer_id, f"officer #{officer_id}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def poll(self) -> None:
        """Read the tasks once and print what changed."""
        tasks: list[Mapping[str, Any]] = []
        for subject_id in self.names:
            answer = await self.session.get(f"/api/v1/tasks?subject_id={subject_id}")
            if answer is None:
                return
            tasks += answer["tasks"]
        people = {t["assignee_id"] for t in tasks} | {t["done_by"] for t in tasks}
        if not {p for p in people if p is not None} <= self.officers.keys():
            listed = await self.session.get("/api/v1/officers")
            if listed is not None:
                self.officers = {o["id"]: o["username"] for o in listed["officers"]}
        for task in sorted(tasks, key=lambda t: t["id"]):
            self._show(task)
        self.first = False

    def _show(self, task: Mapping[str, Any]) -> None:
        now = (task["status"], task["escalation_level"], task["assignee_id"], task["sla_missed_at"])
        before = self.seen.get(task["id"])
        if before == now:
            return
        self.seen[task["id"]] = now
        who = self.names.get(task["subject_id"], f"subject {task['subject_id']}")
        head = f"#{task['id']} {task['kind']} {who}"
        about = next(
            (
                f" ({label} #{task[key]})"
                for key, label in (
                    ("alert_id", "alert"),
                    ("proposal_id", "proposal"),
                    ("checkin_id", "check-in"),
                    ("leave_id", "leave"),
                )
                if task.get(key) is not None
            ),
            "",
        )
        holder = self._who(task["assignee_id"])
        due = _local_time(task["due_at"])
        level = task["escalation_level"]
        if before is None:
            if task["status"] != "open" and self.first:
                return  # history from before the demo started watching
            if level == 0:
                self._print(f"[task created] {head} → {holder} due {due}{about}")
            else:
                self._print(f"[task open] {head} → level {level} {holder} due {due}{about}")
        elif level != before[1]:
            self._print(f"[task escalated] {head} → level {level} {holder} due {due}")
        if task["sla_missed_at"] and (before is None or before[3] is None):
            self._print(f"[task overdue] {head}: missed at level {level}, stays with {holder}")
        if task["status"] == "done" and (before is None or before[0] != "done"):
            outcome = f" ({task['outcome']})" if task["outcome"] else ""
            self._print(f"[task done] {head} by {self._who(task['done_by'])}{outcome}")


class ProposalWatch:
    """Prints the demo subjects' proposals as the ladder makes them (with the curl lines
    that fetch the evidence PDF and decide) and as they are decided."""

    def __init__(
        self,
        api: DemoApi,
        login: DemoLogin,
        names: Mapping[int, str],
        out: TextIO,
        base_url: str,
    ) -> None:
        self.session = _Session(api, login)
        self.names = names
        self.out = out
        self.base = base_url.rstrip("/")
        self.seen: dict[int, str] = {}
        self.first = True

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def poll(self) -> None:
        """Read the proposals once and print what changed."""
        proposals: list[Mapping[str, Any]] = []
        for subject_id in self.names:
            answer = await self.session.get(f"/api/v1/proposals?subject_id={subject_id}")
            if answer is None:
                return
            proposals += answer["proposals"]
        for proposal in sorted(proposals, key=lambda p: p["id"]):
            self._show(proposal)
        self.first = False

    def _show(self, proposal: Mapping[str, Any]) -> None:
        status = proposal["status"]
        before = self.seen.get(proposal["id"])
        if before == status:
            return
        self.seen[proposal["id"]] = status
        if before is None and status != "pending" and self.first:
            return  # decided before the demo started watching
        who = self.names.get(proposal["subject_id"], f"subject {proposal['subject_id']}")
        head = f"#{proposal['id']} {_measure_label(proposal)} {who}"
        if before is None:
            url = f"{self.base}/api/v1/proposals/{proposal['id']}"
            self._print(
                f"[proposal] {head} — {proposal['article']} — PDF: "
                f'curl -H "Authorization: Bearer $TOKEN" {url}/document '
                f"-o proposal-{proposal['id']}.pdf"
            )
            if status == "pending":
                decision = json.dumps(
                    {"decision": "approved", "note": "同意训诫"}
                    if proposal["measure"] == "reprimand"
                    else {"decision": "approved"},
                    ensure_ascii=False,
                )
                self._print(
                    f"[proposal] #{proposal['id']} is pending: the county administrator "
                    f"decides it (the demo decides nothing): curl -X POST "
                    f"-H \"Authorization: Bearer $COUNTY\" -H 'Content-Type: application/json' "
                    f"-d '{decision}' {url}/decide"
                )
        if status != "pending":
            self._print(f"[proposal {status}] {head}")


class ActingOfficer:
    """The demo's simulated officer (clearly labelled so on the console): once a verify_alert
    task of the demo's subjects opened at or after ``since`` has escalated past its officer,
    it acknowledges that alert and, ``act_after_s`` seconds after it saw the escalation,
    resolves it ``confirmed`` with gravity minor and a note, as ``login`` through the API,
    so that the legal ladder proposes a response. It acts once; nothing else is simulated
    (proposals are left for a person to decide)."""

    def __init__(
        self,
        api: DemoApi,
        login: DemoLogin,
        names: Mapping[int, str],
        out: TextIO,
        *,
        since: datetime,
        act_after_s: float = ACTING_AFTER_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session = _Session(api, login)
        self.login = login
        self.names = names
        self.out = out
        self.since = since
        self.act_after_s = act_after_s
        self.clock = clock
        self.noticed: dict[int, datetime] = {}
        self.acted_on: int | None = None

    async def poll(self) -> bool:
        """Look once; True once the officer has confirmed an alert (now or before)."""
        if self.acted_on is not None:
            return True
        answer = await self.session.get("/api/v1/tasks?status=open&kind=verify_alert")
        if answer is None:
            return False
        escalated = [
            t
            for t in answer["tasks"]
            if t["subject_id"] in self.names
            and t["escalation_level"] >= 1
            and t["alert_id"] is not None
            and datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")) >= self.since
        ]
        if not escalated:
            return False
        task = min(escalated, key=lambda t: t["id"])
        noticed = self.noticed.setdefault(task["id"], self.clock())
        if (self.clock() - noticed).total_seconds() < self.act_after_s:
            return False
        await self._confirm(task)
        return True

    async def _confirm(self, task: Mapping[str, Any]) -> None:
        from correction_monitor.domain.ladder import BREACH_LABELS

        alert_id = task["alert_id"]
        name = self.names[task["subject_id"]]
        alert = await self.session.get(f"/api/v1/alerts/{alert_id}")
        kind = alert["type"] if alert else "alert"
        what = BREACH_LABELS.get(kind, (kind, kind))[0]
        note = ACTING_NOTE.format(name=name, what=what)
        await self.session.post(f"/api/v1/alerts/{alert_id}/acknowledge")
        await self.session.post(
            f"/api/v1/alerts/{alert_id}/resolve",
            {"disposition": "confirmed", "gravity": "minor", "note": note},
        )
        self.acted_on = alert_id
        print(
            f"[demo officer, simulated] {self.login.username} acknowledges alert #{alert_id} "
            f"{kind} {name} (task #{task['id']} escalated to level {task['escalation_level']}) "
            f"and confirms it as a minor breach: {note}",
            file=self.out,
            flush=True,
        )


async def _keep_polling(poll: Callable[[], Awaitable[object]], interval_s: float) -> None:
    while True:
        try:
            if await poll() is True:
                return
        except (aiohttp.ClientError, TimeoutError, DemoError):
            pass  # the service is busy or restarting: next round
        await asyncio.sleep(interval_s)


async def follow_tasks(
    api: DemoApi,
    login: DemoLogin,
    names: Mapping[int, str],
    out: TextIO,
    *,
    interval_s: float = 3.0,
) -> None:
    """Print the demo subjects' task changes (:class:`TaskWatch`) until cancelled."""
    watch = TaskWatch(api, login, names, out)

    async def poll() -> None:
        await watch.poll()

    await _keep_polling(poll, interval_s)


async def follow_proposals(
    api: DemoApi,
    login: DemoLogin,
    names: Mapping[int, str],
    out: TextIO,
    base_url: str,
    *,
    interval_s: float = 3.0,
) -> None:
    """Print the demo subjects' proposals (:class:`ProposalWatch`) until cancelled."""
    watch = ProposalWatch(api, login, names, out, base_url)

    async def poll() -> None:
        await watch.poll()

    await _keep_polling(poll, interval_s)


async def act_as_officer(
    api: DemoApi,
    login: DemoLogin,
    names: Mapping[int, str],
    out: TextIO,
    *,
    since: datetime,
    interval_s: float = 5.0,
) -> None:
    """Run :class:`ActingOfficer` until it has confirmed one alert."""
    officer = ActingOfficer(api, login, names, out, since=since)
    await _keep_polling(officer.poll, interval_s)


# --- the command ------------------------------------------------------------------------------


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _token_line(base: str, variable: str, login: DemoLogin) -> str:
    login_json = json.dumps({"username": login.username, "password": login.password})
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    return (
        f"  {variable}=$(curl -s -X POST {base}/api/v1/auth/token "
        f"-H 'Content-Type: application/json' -d '{login_json}' | {extract})"
    )


def _story(policy_file: Path | None) -> list[str]:
    """What to watch for in the first minutes (with the demo policy's times)."""
    if policy_file is None:
        return [
            "Tasks, escalations and proposals follow the policy in CM_POLICY_FILE: with real",
            "SLAs the first escalation takes its full time.",
        ]
    from correction_monitor.policy import load_policy

    policy = load_policy(policy_file)
    grace = policy.self_resolution("left_activity_area")
    sla = policy.level("strict").ack_sla_high_s
    step = policy.tasks.escalation_sla_s[0]
    return [
        "What happens (minutes from now):",
        "  ~3   张某 has left the county: a left_activity_area alert; his phone is told to return",
        f"  ~4   still out after {grace:.0f} s: the alert reaches 东关司法所, a verify_alert task "
        f"for dongguan-officer, due {sla:.0f} s after detection",
        "  ~5   nobody acknowledged it: [task escalated] to level 1, dongguan-head (所长), "
        f"who has {step:.0f} s",
        "  ~5.5 the demo's SIMULATED officer (dongguan-officer) confirms the alert as a minor "
        "breach:",
        "       the ladder proposes 训诫 (reprimand), pending for the county administrator "
        "(you) to decide",
        "  later 王某's 禁止令 alert (~5 min) escalates the same way unless you acknowledge it,"
        " and more alerts follow.",
    ]


def _banner(
    settings: Settings,
    base: str,
    world: DemoWorld,
    phones: bool,
    policy_file: Path | None = None,
    patrols: Sequence[TonightPlan] = (),
) -> str:
    first = world.subjects[0].subject_id
    lines = [
        "",
        f"correction-monitor demo: {COUNTY_NAME} is being served at {base}",
        "",
        "Try:",
        f"  curl -s {base}/readyz",
        _token_line(base, "TOKEN", LOGINS[0]),
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/alerts',
        f'  curl -sN -H "Authorization: Bearer $TOKEN" "{base}/api/v1/alerts/stream?since=0"',
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/subjects',
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f'"{base}/api/v1/subjects/{first}/track?purpose=demo"',
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/subjects/{first}/checkins',
        "",
        "Tasks (a station officer's queue), proposals and their evidence PDF:",
        _token_line(base, "OFFICER", login_of(ACTING_OFFICER)),
        f'  curl -s -H "Authorization: Bearer $OFFICER" "{base}/api/v1/tasks?assignee=me"',
        f'  curl -s -H "Authorization: Bearer $TOKEN" "{base}/api/v1/tasks?status=open"',
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/proposals',
        f'  curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/proposals/ID/document '
        "-o proposal.pdf",
        _token_line(base, "COUNTY", login_of("county")),
        f'  curl -s -X POST -H "Authorization: Bearer $COUNTY" '
        "-H 'Content-Type: application/json' "
        f'-d \'{{"decision": "approved"}}\' {base}/api/v1/proposals/ID/decide',
        "",
        *_patrol_lines(base, patrols),
        "Demo logins (DEMO ONLY, never use these passwords anywhere else):",
    ]
    lines += [f"  {x.username:<20} {x.password:<32} {x.label}" for x in LOGINS]
    lines.append(
        f"  ({ACTING_OFFICER} is also played by the demo: a SIMULATED officer that confirms one"
        " escalated alert, labelled [demo officer, simulated])"
    )
    lines += ["", "Subjects (activity area: the whole county):"]
    for s in world.subjects:
        lines.append(
            f"  #{s.subject_id:<4} {s.plan.name:<4} {s.plan.level:<8} {s.plan.station:<13} "
            f"{s.plan.story if phones else 'no phone running'}"
        )
    embedded_db = not os.environ.get("CM_DATABASE_URL")
    embedded_redis = not os.environ.get("CM_REDIS_URL")
    assert settings.database_url is not None
    assert settings.redis_url is not None
    lines += [
        "",
        "Data:",
        f"  PostgreSQL  {_masked(settings.database_url)}"
        + (f"  (embedded, files in {settings.data_dir / 'pg'})" if embedded_db else ""),
        f"  Redis       {_masked(settings.redis_url)}"
        + (f"  (embedded, in {settings.data_dir / 'redis'})" if embedded_redis else ""),
        f"  phones      {world.devices_file} (device tokens, mode 0600)",
        "  "
        + (
            _demo_policy_line(policy_file)
            if policy_file is not None
            else f"policy      {settings.policy_file or 'the shipped defaults'}"
        ),
        "",
    ]
    if phones:
        lines += [*_story(policy_file), ""]
    lines += [
        f"Every {CHALLENGE_EVERY_S / 60:.0f} min each subject gets a face challenge to answer"
        f" within {CHALLENGE_ANSWER_S} s;",
        "alerts, tasks, proposals and check-in outcomes are printed below as they happen"
        " (task times: Beijing time).",
        "Ctrl-C stops the demo"
        + (" and the embedded servers." if embedded_db or embedded_redis else "."),
        "",
    ]
    return "\n".join(lines)


def _patrol_lines(base: str, plans: Sequence[TonightPlan]) -> list[str]:
    """Tonight's plans: stops per team and the curl lines of each export."""
    if not plans:
        return []
    night = plans[0].night.isoformat()
    lines = [
        f"Night patrols (夜间巡查) tonight, {night} {PATROL_WINDOW[0]}-24:00, planned now for "
        "each station",
        "(a draft is re-planned at every start, a published plan kept); the sheet PDF has the "
        "route map",
        "(every team's route, stops numbered) and a page per team:",
    ]
    for plan in plans:
        if plan.plan_id is None:
            lines.append(f"  {plan.station_name}: not planned ({plan.problem})")
            continue
        teams = (
            ", ".join(f"{team} {n} stop{'' if n == 1 else 's'}" for team, n in plan.stops)
            or "no teams"
        )
        lines.append(
            f"  {plan.station_name} plan #{plan.plan_id} ({plan.status}): {teams}; "
            f"{plan.unassigned} unassigned"
        )
        url = f"{base}/api/v1/patrol-plans/{plan.plan_id}"
        lines += [
            f'    curl -s -H "Authorization: Bearer $TOKEN" {url}',
            f'    curl -s -H "Authorization: Bearer $TOKEN" {url}.geojson',
            f'    curl -s -H "Authorization: Bearer $TOKEN" {url}.csv',
            f'    curl -H "Authorization: Bearer $TOKEN" {url}/sheet -o patrol-{plan.station}.pdf',
        ]
    return [*lines, ""]


def _listen_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    # A wildcard address is not somewhere to send requests: talk to ourselves on loopback.
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _serve(
    settings: Settings, phones: bool, stop: asyncio.Event, policy_file: Path | None
) -> int:
    """Serve exactly as ``correction-monitor serve`` does (its listening socket, the ingest
    front, the same shutdown), with the demo world seeded and its phones running."""
    from correction_monitor.cli import SHUTDOWN_TIMEOUT_S, listen
    from correction_monitor.web.app import init_app
    from correction_monitor.web.front import serving

    assert settings.database_url
    try:
        sock = listen(settings)
    except OSError as exc:
        print(
            f"demo: cannot listen on {settings.http_host}:{settings.http_port} ({exc}); "
            f"choose another port with --port or CM_HTTP_PORT",
            file=sys.stderr,
        )
        return 1
    with sock:
        base = _listen_address(sock)
        async with serving(init_app(settings), sock, shutdown_timeout=SHUTDOWN_TIMEOUT_S):
            return await _run_world(settings, base, phones, stop, policy_file)


async def _run_world(
    settings: Settings, base: str, phones: bool, stop: asyncio.Event, policy_file: Path | None
) -> int:
    assert settings.database_url
    tasks: list[asyncio.Task[Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        api = DemoApi(session, base)
        try:
            world = await seed(api, settings.database_url, Path(settings.data_dir))
        except DemoError as exc:
            print(f"demo: seeding failed: {exc}", file=sys.stderr)
            return 1
        if world.created:
            print(f"demo: created {len(world.created)} demo records", flush=True)
        else:
            print("demo: demo data already present; reusing it", flush=True)
        try:
            patrols = await plan_tonight(api, world.admin_token, world.patrol_teams)
        except (DemoError, aiohttp.ClientError, TimeoutError) as exc:
            print(f"demo: planning tonight's patrols failed: {exc}", file=sys.stderr)
            patrols = ()
        print(_banner(settings, base, world, phones, policy_file, patrols), flush=True)
        names = {s.subject_id: s.plan.name for s in world.subjects}
        started = datetime.now(UTC)
        out = sys.stdout
        tasks.append(asyncio.create_task(follow_alerts(api, LOGINS[0], names, out)))
        tasks.append(asyncio.create_task(follow_tasks(api, LOGINS[0], names, out)))
        tasks.append(asyncio.create_task(follow_proposals(api, LOGINS[0], names, out, base)))
        if phones:
            officer = login_of(ACTING_OFFICER)
            tasks.append(
                asyncio.create_task(act_as_officer(api, officer, names, out, since=started))
            )
            tasks.append(asyncio.create_task(run_phones(api, world.subjects)))
            tasks.append(
                asyncio.create_task(run_checkins(api, world.subjects, LOGINS[0], sys.stdout))
            )
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    print("demo: stopping", flush=True)
    return 0


async def _main(settings: Settings, phones: bool, policy_file: Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve(settings, phones, stop, policy_file)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_demo(settings: Settings, phones: bool = True) -> int:
    """Migrate, seed the demo county and serve it until Ctrl-C or SIGTERM.

    Parameters
    ----------
    settings
        Resolved settings: ``database_url`` and ``redis_url`` set (the CLI starts embedded
        servers for what the environment leaves unset, and stops them after this returns).
    phones
        Run the simulated phones (``--no-phones`` turns them off).

    Returns
    -------
    int
        The exit status: 0 after a clean stop, 1 when the port is taken or seeding failed.
    """
    # Escalations within minutes rather than hours, unless the operator chose a policy.
    settings, policy_file = demo_policy(settings)
    assert settings.database_url, "run_demo needs a resolved database URL"
    assert settings.redis_url, "run_demo needs a resolved redis URL"
    migrate(settings.database_url)
    # The console should show alerts; apscheduler reports every job run at INFO.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.root.level))
    # asyncio puts SIG_DFL back when it drops its handlers; the caller's (the embedded
    # servers' SIGTERM → clean stop) must survive the demo.
    saved: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return asyncio.run(_main(settings, phones, policy_file))
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
