"""Night-patrol routing (夜间巡查): which team visits whom tonight, in which order, and when.

A pure module: no database, no HTTP. It turns a :class:`RoutingProblem` (homes to visit,
teams with their own start points, capacities, working windows, speeds and minutes per
stop) into a :class:`RoutingResult` (one route per team, an ETA per stop, and who is left
unassigned and why), with PyVRP's iterated local search doing the search
(docs/patrol-routing.md; the choice of solver is in docs/decisions.md).

* **Distances.** Between two points, the WGS-84 geodesic. Travel *times* use the road
  distance, taken as geodesic × ``detour_factor``, at the team's ``speed_mps``. A route's
  reported ``distance_m`` is the plain geodesic length start → stops → start (no detour),
  as the contract fixes it.
* **Objective** (what the search minimises): the total road (detoured) distance of all
  routes, plus ``prize_scale_m`` metres for each unit of prize of an optional stop left
  out. A required stop is worth more than any set of optional ones and any detour, so it
  is visited whenever some plan can fit it.
* **Feasibility.** A team visits at most ``capacity`` (in units of ``Stop.demand``, 1 a
  visit) and its whole route, the drive back to its start included, falls inside its
  window: so every ETA plus the minutes per stop falls inside it too.
* **ETAs** are recomputed exactly from the chosen order: the team leaves at its
  ``window_start_s``, drives, waits if a stop's ``earliest_s`` is later, and stays
  ``stop_s`` at each stop.
* **Determinism.** The search stops after a number of iterations fixed by the problem
  (``max_iterations``, or one derived from its size), so the same problem and seed give
  the same plan; ``time_limit_s`` is a safety cap that only a machine far slower or busier
  than expected reaches.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from geopy.distance import geodesic as _geopy_geodesic
from pyvrp import Client, Depot, Location, ProblemData, VehicleType
from pyvrp import solve as _pyvrp_solve
from pyvrp.stop import MaxIterations, MaxRuntime, MultipleCriteria

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Reasons a stop is left unassigned.
REASON_CAPACITY: Final = "capacity"  # every team that could reach it is full
REASON_TIME_WINDOW: Final = "time_window"  # no team can fit it in its window
REASON_NOT_WORTH_IT: Final = "not_worth_it"  # optional, fits, but its prize is below the detour
REASON_NO_TEAM: Final = "no_team"  # the problem has no team at all

# WGS-84 ellipsoid.
_A: Final = 6378137.0
_F: Final = 1 / 298.257223563
_B: Final = _A * (1 - _F)


@dataclass(frozen=True, slots=True)
class Stop:
    """A subject's home to visit.

    ``earliest_s``/``latest_s`` optionally bound the arrival (seconds from the night's
    reference instant); ``demand`` is how much of a team's capacity the visit takes.
    """

    key: int
    lon: float
    lat: float
    prize: float
    required: bool
    demand: int = 1
    earliest_s: float | None = None
    latest_s: float | None = None


@dataclass(frozen=True, slots=True)
class Team:
    """A patrol team: it starts and ends at ``(lon, lat)``, inside its window."""

    key: int
    lon: float
    lat: float
    capacity: int
    window_start_s: float
    window_end_s: float
    speed_mps: float
    stop_s: float


@dataclass(frozen=True, slots=True)
class RoutingProblem:
    """One night's routing problem.

    ``distances_m``, when given, replaces the geodesic: a square matrix over the teams'
    start points (in ``teams`` order) followed by the stops (in ``stops`` order). It is
    for instances defined on a plane (benchmarks) and is not compared or hashed.
    """

    stops: tuple[Stop, ...]
    teams: tuple[Team, ...]
    detour_factor: float
    time_limit_s: float
    seed: int
    prize_scale_m: float = 10_000.0
    max_iterations: int | None = None
    distances_m: FloatArray | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True, slots=True)
class PlannedStop:
    """A stop in a route: its order (1-based) and its arrival, seconds from the reference."""

    key: int
    seq: int
    eta_s: float


@dataclass(frozen=True, slots=True)
class Route:
    """A team's route; ``distance_m`` is geodesic (no detour), ``duration_s`` from the
    window's start to the return to the team's start."""

    team_key: int
    stops: tuple[PlannedStop, ...]
    distance_m: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class RoutingResult:
    """The plan: one route per team (in ``teams`` order, possibly empty).

    ``feasible`` is false when a required stop is left unassigned. ``objective`` is the
    minimised quantity (module docstring), recomputed exactly from the routes.
    """

    routes: tuple[Route, ...]
    unassigned: tuple[tuple[int, str], ...]
    feasible: bool
    objective: float
    runtime_s: float


def geodesic_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """The WGS-84 geodesic distance in metres (GeographicLib, through geopy).

    >>> round(geodesic_m(116.3975, 39.9087, 116.4075, 39.9087), 1)
    855.1
    """
    return float(_geopy_geodesic((lat1, lon1), (lat2, lon2)).meters)


def geodesic_matrix_m(lons: Sequence[float], lats: Sequence[float]) -> FloatArray:
    """All pairwise WGS-84 geodesic distances in metres (Vincenty's inverse, vectorised).

    Agrees with :func:`geodesic_m` to well under a millimetre for points that are not
    nearly antipodal (any one county's, or country's, points).
    """
    lon = np.radians(np.asarray(lons, dtype=np.float64))
    lat = np.radians(np.asarray(lats, dtype=np.float64))
    u = np.arctan((1 - _F) * np.tan(lat))
    sin_u, cos_u = np.sin(u), np.cos(u)
    big_l = lon[None, :] - lon[:, None]
    s1c2 = sin_u[:, None] * cos_u[None, :]
    c1s2 = cos_u[:, None] * sin_u[None, :]
    s1s2 = sin_u[:, None] * sin_u[None, :]
    c1c2 = cos_u[:, None] * cos_u[None, :]
    lam = big_l.copy()
    for _ in range(200):
        sin_lam, cos_lam = np.sin(lam), np.cos(lam)
        sin_sigma = np.hypot(cos_u[None, :] * sin_lam, c1s2 - s1c2 * cos_lam)
        cos_sigma = s1s2 + c1c2 * cos_lam
        sigma = np.arctan2(sin_sigma, cos_sigma)
        with np.errstate(invalid="ignore", divide="ignore"):
            sin_alpha = np.where(sin_sigma > 0, c1c2 * sin_lam / sin_sigma, 0.0)
            cos2_alpha = 1 - sin_alpha**2
            cos_2sm = np.where(cos2_alpha > 0, cos_sigma - 2 * s1s2 / cos2_alpha, 0.0)
        c = _F / 16 * cos2_alpha * (4 + _F * (4 - 3 * cos2_alpha))
        new_lam = big_l + (1 - c) * _F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm**2))
        )
        done = np.max(np.abs(new_lam - lam)) < 1e-12
        lam = new_lam
        if done:
            break
    u2 = cos2_alpha * (_A**2 - _B**2) / _B**2
    k1 = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)))
    big_a = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)))
    delta_sigma = (
        k1
        * sin_sigma
        * (
            cos_2sm
            + k1
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm**2)
                - k1 / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    dist: FloatArray = _B * big_a * (sigma - delta_sigma)
    np.fill_diagonal(dist, 0.0)
    return dist


# --------------------------------------------------------------------------------------
# Exact evaluation of a route (float seconds), shared by the solver's output and checks.


@dataclass(slots=True)
class _Instance:
    """The problem in matrix form: location 0..T-1 are the teams' starts, T.. the stops."""

    problem: RoutingProblem
    geo_m: FloatArray  # plain distances (reported)
    road_m: FloatArray  # detoured distances (objective, travel times)
    earliest: FloatArray  # per stop
    latest: FloatArray  # per stop
    demand: IntArray  # per stop

    @property
    def n_teams(self) -> int:
        return len(self.problem.teams)

    def loc(self, stop_idx: int) -> int:
        return self.n_teams + stop_idx

    def schedule(self, t: int, seq: Sequence[int]) -> tuple[list[float], float]:
        """ETAs of the stops ``seq`` (stop indices) for team ``t``, and its return time."""
        team = self.problem.teams[t]
        now = team.window_start_s
        prev = t
        etas: list[float] = []
        for s in seq:
            loc = self.loc(s)
            now += self.road_m[prev, loc] / team.speed_mps
            now = max(now, float(self.earliest[s]))
            etas.append(now)
            now += team.stop_s
            prev = loc
        now += self.road_m[prev, t] / team.speed_mps
        return etas, now

    def route_ok(self, t: int, seq: Sequence[int]) -> bool:
        team = self.problem.teams[t]
        if seq and int(self.demand[list(seq)].sum()) > team.capacity:
            return False
        etas, back = self.schedule(t, seq)
        if back > team.window_end_s + 1e-6:
            return False
        return all(eta <= self.latest[s] + 1e-6 for eta, s in zip(etas, seq, strict=True))

    def road_length(self, t: int, seq: Sequence[int]) -> float:
        locs = [t, *(self.loc(s) for s in seq), t]
        return float(sum(self.road_m[a, b] for a, b in itertools.pairwise(locs)))

    def insertion_cost(self, t: int, seq: Sequence[int], s: int) -> tuple[float, int] | None:
        """The cheapest feasible position for stop ``s`` in team ``t``'s route, if any."""
        best: tuple[float, int] | None = None
        locs = [t, *(self.loc(x) for x in seq), t]
        ls = self.loc(s)
        for pos in range(len(seq) + 1):
            added = (
                self.road_m[locs[pos], ls]
                + self.road_m[ls, locs[pos + 1]]
                - self.road_m[locs[pos], locs[pos + 1]]
            )
            if best is not None and added >= best[0]:
                continue
            cand = [*seq[:pos], s, *seq[pos:]]
            if self.route_ok(t, cand):
                best = (float(added), pos)
        return best


def _build_instance(problem: RoutingProblem) -> _Instance:
    n_t, n_s = len(problem.teams), len(problem.stops)
    if problem.distances_m is not None:
        geo = np.asarray(problem.distances_m, dtype=np.float64)
        if geo.shape != (n_t + n_s, n_t + n_s):
            raise ValueError("distances_m must be square over the teams' starts and the stops")
    else:
        lons = [t.lon for t in problem.teams] + [s.lon for s in problem.stops]
        lats = [t.lat for t in problem.teams] + [s.lat for s in problem.stops]
        geo = geodesic_matrix_m(lons, lats)
    inf = math.inf
    return _Instance(
        problem=problem,
        geo_m=geo,
        road_m=geo * problem.detour_factor,
        earliest=np.array(
            [-inf if s.earliest_s is None else s.earliest_s for s in problem.stops],
            dtype=np.float64,
        ),
        latest=np.array(
            [inf if s.latest_s is None else s.latest_s for s in problem.stops], dtype=np.float64
        ),
        demand=np.array([s.demand for s in problem.stops], dtype=np.int64),
    )


def _validate(problem: RoutingProblem) -> None:
    if problem.detour_factor < 1.0:
        raise ValueError("detour_factor must be at least 1")
    if problem.prize_scale_m < 0:
        raise ValueError("prize_scale_m must not be negative")
    for team in problem.teams:
        if team.speed_mps <= 0 or team.stop_s < 0 or team.capacity < 0:
            raise ValueError(f"team {team.key}: speed must be positive, stop time and capacity ≥ 0")
        if team.window_end_s < team.window_start_s:
            raise ValueError(f"team {team.key}: window ends before it starts")
    for stop in problem.stops:
        if stop.prize < 0 or stop.demand < 0:
            raise ValueError(f"stop {stop.key}: prize and demand must not be negative")
    if len({s.key for s in problem.stops}) != len(problem.stops):
        raise ValueError("stop keys must be unique")
    if len({t.key for t in problem.teams}) != len(problem.teams):
        raise ValueError("team keys must be unique")


# --------------------------------------------------------------------------------------
# The PyVRP model.

_INT_MAX: Final = 2**62


def _default_iterations(n_stops: int) -> int:
    """Iterations for the search when the problem does not fix them (see module doc)."""
    return max(2_000, min(20_000, 200_000 // max(1, n_stops)))


def _pyvrp_data(inst: _Instance, soft: bool) -> tuple[ProblemData, list[list[int]]]:
    """The PyVRP data, and for each vehicle type the team indices it stands for.

    With ``soft``, required stops are optional with a prize above any plan's distance and
    all optional prizes together, so that a night that cannot fit them all still gets the
    best plan for those it can.
    """
    problem = inst.problem
    n_t, n_s = inst.n_teams, len(problem.stops)

    # Identical teams share a vehicle type and a depot (one location: the first team's).
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, team in enumerate(problem.teams):
        key = (
            team.lon,
            team.lat,
            team.capacity,
            team.window_start_s,
            team.window_end_s,
            team.speed_mps,
            team.stop_s,
        )
        groups.setdefault(key, []).append(i)
    members = list(groups.values())
    n_d = len(members)
    # The search's locations: one per vehicle type, then the stops.
    index = np.array([idx[0] for idx in members] + [n_t + j for j in range(n_s)], dtype=np.int64)
    road = inst.road_m[np.ix_(index, index)]
    distance = np.rint(road).astype(np.int64)
    locations = [
        Location(x=problem.teams[idx[0]].lon, y=problem.teams[idx[0]].lat) for idx in members
    ]
    locations += [Location(x=stop.lon, y=stop.lat) for stop in problem.stops]

    # A stop's time is the team's, not the stop's. When all teams share one it is the
    # stops' service duration; otherwise each (speed, stop time) gets a duration matrix
    # (profile) of its own with the stop time folded into the travel out of each stop.
    shared_stop = len({t.stop_s for t in problem.teams}) == 1
    service = math.ceil(problem.teams[0].stop_s - 1e-9) if shared_stop else 0
    is_stop = np.zeros(n_d + n_s, dtype=bool)
    is_stop[n_d:] = True
    profiles: dict[tuple[float, float], int] = {}
    durations: list[IntArray] = []
    depots: list[Depot] = []
    vehicle_types: list[VehicleType] = []
    for d, idx in enumerate(members):
        team = problem.teams[idx[0]]
        pkey = (team.speed_mps, 0.0 if shared_stop else team.stop_s)
        if pkey not in profiles:
            profiles[pkey] = len(durations)
            folded = np.where(is_stop, pkey[1], 0.0)[:, None]
            # Rounded up: a route the search finds feasible is feasible to the second.
            dur = np.ceil(road / team.speed_mps + folded - 1e-9).astype(np.int64)
            np.fill_diagonal(dur, 0)
            durations.append(dur)
        depots.append(Depot(location=d))
        start = math.ceil(team.window_start_s)
        vehicle_types.append(
            VehicleType(
                num_available=len(idx),
                capacity=[team.capacity],
                start_depot=d,
                end_depot=d,
                tw_early=start,
                tw_late=max(start, math.floor(team.window_end_s)),
                start_late=start,
                profile=profiles[pkey],
            )
        )

    optional_prizes = [
        round(s.prize * problem.prize_scale_m) for s in problem.stops if not s.required
    ]
    max_d = int(distance.max()) if distance.size else 0
    must = min(_INT_MAX // 4, sum(optional_prizes) + (2 * max_d + 1) * (n_s + 1))
    clients = []
    for j, stop in enumerate(problem.stops):
        early = 0 if stop.earliest_s is None else math.ceil(stop.earliest_s)
        late = _INT_MAX if stop.latest_s is None else math.floor(stop.latest_s)
        clients.append(
            Client(
                location=n_d + j,
                delivery=[stop.demand],
                service_duration=service,
                tw_early=early,
                tw_late=max(early, late),
                prize=(must if soft else 0)
                if stop.required
                else round(stop.prize * problem.prize_scale_m),
                required=stop.required and not soft,
            )
        )
    data = ProblemData(
        locations=locations,
        clients=clients,
        depots=depots,
        vehicle_types=vehicle_types,
        # The stubs type the matrices' shape parameter oddly; they are plain 2-D int64.
        distance_matrices=[distance] * len(durations),  # type: ignore[list-item]
        duration_matrices=durations,  # type: ignore[arg-type]
    )
    return data, members


def _search(inst: _Instance) -> list[list[int]]:
    """Each team's sequence of stop indices, as the search found them (feasible)."""
    problem = inst.problem
    iterations = problem.max_iterations or _default_iterations(len(problem.stops))
    started = time.perf_counter()
    data, members = _pyvrp_data(inst, soft=False)
    stop = MultipleCriteria([MaxIterations(iterations), MaxRuntime(problem.time_limit_s)])
    result = _pyvrp_solve(data, stop=stop, seed=problem.seed, collect_stats=False)
    sequences: list[list[int]] = [[] for _ in problem.teams]
    if not result.is_feasible():
        # Not every required stop fits: search again with them as heavily-prized optional
        # stops, within what is left of the time cap.
        left = max(0.1, problem.time_limit_s - (time.perf_counter() - started))
        data, members = _pyvrp_data(inst, soft=True)
        stop = MultipleCriteria([MaxIterations(iterations), MaxRuntime(left)])
        result = _pyvrp_solve(data, stop=stop, seed=problem.seed, collect_stats=False)
        if not result.is_feasible():
            return sequences
    used = [0] * len(members)
    for route in result.best.routes():
        vt = route.vehicle_type()
        team = members[vt][used[vt]]
        used[vt] += 1
        sequences[team] = [a.idx for a in route.schedule() if a.is_client()]
    return sequences


# --------------------------------------------------------------------------------------
# Solving, repairing and explaining.


def _repair_required(inst: _Instance, seqs: list[list[int]]) -> None:
    """Insert any required stop the search left out where a feasible place exists."""
    problem = inst.problem
    assigned = {s for seq in seqs for s in seq}
    for s, stop in enumerate(problem.stops):
        if not stop.required or s in assigned:
            continue
        best: tuple[float, int, int] | None = None
        for t in range(inst.n_teams):
            found = inst.insertion_cost(t, seqs[t], s)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], t, found[1])
        if best is not None:
            seqs[best[1]].insert(best[2], s)
            assigned.add(s)


def _fits(inst: _Instance, t: int, seq: Sequence[int], cand: IntArray) -> npt.NDArray[np.bool_]:
    """Which of the stops ``cand`` could be inserted somewhere in team ``t``'s route.

    Vectorised over the candidates: the route's forward time slack at each position says
    how much later its remaining stops (and the return) may start and still fit.
    """
    team = inst.problem.teams[t]
    speed, stop_s, end = team.speed_mps, team.stop_s, team.window_end_s
    load = int(inst.demand[list(seq)].sum()) if seq else 0
    ok_load = load + inst.demand[cand] <= team.capacity
    locs = [t, *(inst.loc(x) for x in seq), t]
    m = len(seq)
    arr = np.zeros(m + 2)
    eta = np.zeros(m + 2)
    depart = np.zeros(m + 2)
    latest = np.full(m + 2, end)
    depart[0] = eta[0] = arr[0] = team.window_start_s
    for k in range(1, m + 2):
        arr[k] = depart[k - 1] + inst.road_m[locs[k - 1], locs[k]] / speed
        if k <= m:
            eta[k] = max(arr[k], float(inst.earliest[seq[k - 1]]))
            latest[k] = min(float(inst.latest[seq[k - 1]]), end - stop_s)
            depart[k] = eta[k] + stop_s
        else:
            eta[k] = arr[k]
    slack = np.zeros(m + 2)
    slack[m + 1] = end - eta[m + 1]
    for k in range(m, 0, -1):
        slack[k] = min(latest[k] - eta[k], (eta[k + 1] - arr[k + 1]) + slack[k + 1])
    cand_locs = inst.n_teams + cand
    c_early, c_late = inst.earliest[cand], np.minimum(inst.latest[cand], end - stop_s)
    fits = np.zeros(len(cand), dtype=bool)
    for p in range(m + 1):
        a, b = locs[p], locs[p + 1]
        c_eta = np.maximum(depart[p] + inst.road_m[a, cand_locs] / speed, c_early)
        new_arr = c_eta + stop_s + inst.road_m[cand_locs, b] / speed
        next_early = float(inst.earliest[seq[p]]) if p < m else -math.inf
        push = np.maximum(new_arr, next_early) - eta[p + 1]
        fits |= (c_eta <= c_late + 1e-6) & (push <= slack[p + 1] + 1e-6)
    return fits & ok_load


def _reasons(inst: _Instance, seqs: list[list[int]], left: list[int]) -> list[str]:
    """Why each stop in ``left`` is not in any route."""
    problem = inst.problem
    if not problem.teams:
        return [REASON_NO_TEAM] * len(left)
    cand = np.asarray(left, dtype=np.int64)
    n = len(left)
    alone = np.zeros((inst.n_teams, n), dtype=bool)  # team could visit it on its own
    room = np.zeros((inst.n_teams, n), dtype=bool)  # ... and still has capacity for it
    fits = np.zeros(n, dtype=bool)  # some route could take it as it is
    for t in range(inst.n_teams):
        alone[t] = _fits(inst, t, [], cand)
        load = int(inst.demand[seqs[t]].sum()) if seqs[t] else 0
        room[t] = alone[t] & (load + inst.demand[cand] <= problem.teams[t].capacity)
        if room[t].any():
            fits |= _fits(inst, t, seqs[t], cand)
    reasons = []
    for i, s in enumerate(left):
        demand = int(inst.demand[s])
        if not alone[:, i].any():
            too_big = all(team.capacity < demand for team in problem.teams)
            reasons.append(REASON_CAPACITY if too_big else REASON_TIME_WINDOW)
        elif not room[:, i].any():
            reasons.append(REASON_CAPACITY)
        elif fits[i] and not problem.stops[s].required:
            reasons.append(REASON_NOT_WORTH_IT)
        else:
            reasons.append(REASON_TIME_WINDOW)
    return reasons


def solve(problem: RoutingProblem) -> RoutingResult:
    """Plan the night: assign stops to teams, order each route, and give each stop an ETA.

    Never raises for an infeasible night: stops that cannot be fitted are listed in
    ``unassigned`` with the constraint that keeps them out (``capacity``,
    ``time_window``), optional ones left out by choice as ``not_worth_it``; ``feasible``
    is false when a required stop is among them. Raises ``ValueError`` for malformed
    input (negative speeds, duplicate keys, a window that ends before it starts).
    """
    started = time.perf_counter()
    _validate(problem)
    inst = _build_instance(problem)
    n_s = len(problem.stops)
    if problem.teams and n_s:
        seqs = _search(inst)
        # The search's integer view is conservative; check anyway, and never return a
        # route that is not feasible to the second.
        for t, seq in enumerate(seqs):
            if seq and not inst.route_ok(t, seq):
                raise AssertionError(f"route of team {problem.teams[t].key} breaks its window")
        _repair_required(inst, seqs)
    else:
        seqs = [[] for _ in problem.teams]

    routes: list[Route] = []
    road_total = 0.0
    for t, team in enumerate(problem.teams):
        seq = seqs[t]
        etas, back = inst.schedule(t, seq)
        locs = [t, *(inst.loc(s) for s in seq), t]
        geo = sum(
            geodesic_m(*_lonlat(problem, a), *_lonlat(problem, b))
            if problem.distances_m is None
            else float(inst.geo_m[a, b])
            for a, b in itertools.pairwise(locs)
        )
        road_total += inst.road_length(t, seq)
        routes.append(
            Route(
                team_key=team.key,
                stops=tuple(
                    PlannedStop(key=problem.stops[s].key, seq=i + 1, eta_s=eta)
                    for i, (s, eta) in enumerate(zip(seq, etas, strict=True))
                ),
                distance_m=float(geo) if seq else 0.0,
                duration_s=(back - team.window_start_s) if seq else 0.0,
            )
        )

    assigned = {s for seq in seqs for s in seq}
    left = [s for s in range(n_s) if s not in assigned]
    unassigned = tuple(
        (problem.stops[s].key, why) for s, why in zip(left, _reasons(inst, seqs, left), strict=True)
    )
    missed_prize = sum(
        problem.stops[s].prize
        for s in range(n_s)
        if s not in assigned and not problem.stops[s].required
    )
    feasible = all(problem.stops[s].required is False for s in range(n_s) if s not in assigned)
    return RoutingResult(
        routes=tuple(routes),
        unassigned=unassigned,
        feasible=feasible,
        objective=road_total + problem.prize_scale_m * missed_prize,
        runtime_s=time.perf_counter() - started,
    )


def _lonlat(problem: RoutingProblem, loc: int) -> tuple[float, float]:
    n_t = len(problem.teams)
    p: Team | Stop = problem.teams[loc] if loc < n_t else problem.stops[loc - n_t]
    return p.lon, p.lat
