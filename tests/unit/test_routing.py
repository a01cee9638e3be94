"""Night-patrol routing against brute force, and its ETAs, capacities and reasons.

The brute force tries every assignment of the stops to the teams (or to nobody) and every
order of each team's stops, with its own schedule arithmetic, and takes the least
objective: the total road (detoured) distance plus ``prize_scale_m`` per unit of prize of
each optional stop left out, with every required stop visited.
"""

from __future__ import annotations

import itertools
import math
import random
from functools import cache

import numpy as np
import pytest

from correction_monitor.domain.routing import (
    REASON_CAPACITY,
    REASON_NO_TEAM,
    REASON_NOT_WORTH_IT,
    REASON_TIME_WINDOW,
    RoutingProblem,
    RoutingResult,
    Stop,
    Team,
    geodesic_m,
    geodesic_matrix_m,
    solve,
)

pytestmark = pytest.mark.unit

LON0, LAT0 = 116.40, 39.90  # a station; homes within ~10 km of it
NIGHT = 20 * 3600.0  # 20:00 from the reference midnight
DETOUR = 1.3
PRIZE_SCALE = 2_000.0


def _point(rng: random.Random) -> tuple[float, float]:
    return LON0 + rng.uniform(-0.11, 0.11), LAT0 + rng.uniform(-0.09, 0.09)


def _instance(seed: int, n_stops: int, n_teams: int) -> RoutingProblem:
    rng = random.Random(seed)
    stops = tuple(
        Stop(
            key=1000 + i,
            lon=(p := _point(rng))[0],
            lat=p[1],
            prize=rng.choice([0.2, 0.5, 1.0, 2.0, 4.0]),
            required=rng.random() < 0.3,
        )
        for i in range(n_stops)
    )
    teams = tuple(
        Team(
            key=10 + k,
            lon=(p := _point(rng))[0],
            lat=p[1],
            capacity=rng.randint(2, 5),
            window_start_s=NIGHT,
            window_end_s=NIGHT + rng.choice([40, 60, 90, 120]) * 60.0,
            speed_mps=rng.choice([25.0, 30.0, 40.0]) / 3.6,
            stop_s=rng.choice([5, 10, 15]) * 60.0,
        )
        for k in range(n_teams)
    )
    return RoutingProblem(
        stops=stops,
        teams=teams,
        detour_factor=DETOUR,
        time_limit_s=5.0,
        seed=seed,
        prize_scale_m=PRIZE_SCALE,
        max_iterations=400,
    )


def _brute_force(problem: RoutingProblem) -> float | None:
    """The optimum objective, or None when no plan visits every required stop."""
    stops, teams = problem.stops, problem.teams

    @cache
    def dist(a: tuple[float, float], b: tuple[float, float]) -> float:
        return geodesic_m(a[0], a[1], b[0], b[1]) * problem.detour_factor

    @cache
    def best_route(t: int, members: frozenset[int]) -> float:
        team = teams[t]
        if len(members) > team.capacity:
            return math.inf
        home = (team.lon, team.lat)
        best = math.inf
        for order in itertools.permutations(sorted(members)):
            pts = [home, *((stops[s].lon, stops[s].lat) for s in order), home]
            road = sum(dist(a, b) for a, b in itertools.pairwise(pts))
            back = team.window_start_s + road / team.speed_mps + team.stop_s * len(order)
            if back <= team.window_end_s + 1e-6:
                best = min(best, road)
        return best

    best_total = math.inf
    for choice in itertools.product(range(-1, len(teams)), repeat=len(stops)):
        if any(c < 0 and stops[s].required for s, c in enumerate(choice)):
            continue
        missed = sum(stops[s].prize for s, c in enumerate(choice) if c < 0)
        total = problem.prize_scale_m * missed
        for t in range(len(teams)):
            total += best_route(t, frozenset(s for s, c in enumerate(choice) if c == t))
            if total >= best_total:
                break
        best_total = min(best_total, total)
    return None if math.isinf(best_total) else best_total


def _check_plan(problem: RoutingProblem, result: RoutingResult) -> None:
    """Recompute every route by hand: capacity, ETAs inside the window, distances."""
    by_key = {s.key: s for s in problem.stops}
    seen: set[int] = set()
    road_total = 0.0
    for team, route in zip(problem.teams, result.routes, strict=True):
        assert route.team_key == team.key
        assert len(route.stops) <= team.capacity
        assert [p.seq for p in route.stops] == list(range(1, len(route.stops) + 1))
        now = team.window_start_s
        prev = (team.lon, team.lat)
        geo = road = 0.0
        for planned in route.stops:
            stop = by_key[planned.key]
            leg = geodesic_m(*prev, stop.lon, stop.lat)
            geo += leg
            road += leg * problem.detour_factor
            now += leg * problem.detour_factor / team.speed_mps
            assert planned.eta_s == pytest.approx(now, abs=1e-6)
            assert team.window_start_s <= planned.eta_s
            assert planned.eta_s + team.stop_s <= team.window_end_s + 1e-6
            now += team.stop_s
            prev = (stop.lon, stop.lat)
            seen.add(planned.key)
        if route.stops:
            leg = geodesic_m(*prev, team.lon, team.lat)
            geo += leg
            road += leg * problem.detour_factor
            now += leg * problem.detour_factor / team.speed_mps
            assert now <= team.window_end_s + 1e-6
            assert route.duration_s == pytest.approx(now - team.window_start_s, abs=1e-6)
        assert route.distance_m == pytest.approx(geo, abs=1e-3)
        road_total += road
    left = {key for key, _ in result.unassigned}
    assert seen.isdisjoint(left)
    assert seen | left == set(by_key)
    missed = sum(by_key[k].prize for k in left if not by_key[k].required)
    assert result.objective == pytest.approx(road_total + problem.prize_scale_m * missed, rel=1e-9)
    assert result.feasible == (not any(by_key[k].required for k in left))


@pytest.mark.parametrize(
    ("seed", "n_stops", "n_teams"),
    [(s, 5, 1) for s in range(6)]
    + [(s, 6, 2) for s in range(6, 18)]
    + [(s, 7, 2) for s in (18, 19)],
)
def test_within_two_percent_of_brute_force(seed: int, n_stops: int, n_teams: int) -> None:
    problem = _instance(seed, n_stops, n_teams)
    optimum = _brute_force(problem)
    result = solve(problem)
    _check_plan(problem, result)
    if optimum is None:
        assert not result.feasible
        return
    assert result.feasible
    assert result.objective <= optimum * 1.02 + 1e-6


def test_brute_force_instances_exercise_both_choices() -> None:
    """The seeded instances above leave some optional stops out and take others."""
    reasons: set[str] = set()
    taken_optional = 0
    for seed in range(6, 18):
        problem = _instance(seed, 6, 2)
        result = solve(problem)
        reasons |= {r for _, r in result.unassigned}
        optional = {s.key for s in problem.stops if not s.required}
        taken_optional += sum(p.key in optional for r in result.routes for p in r.stops)
    assert taken_optional > 0
    assert REASON_NOT_WORTH_IT in reasons


def _team(key: int = 1, **kw: float) -> Team:
    args: dict[str, float] = {
        "lon": LON0,
        "lat": LAT0,
        "capacity": 10,
        "window_start_s": NIGHT,
        "window_end_s": NIGHT + 4 * 3600,
        "speed_mps": 30 / 3.6,
        "stop_s": 600,
    }
    args.update(kw)
    return Team(
        key=key,
        lon=args["lon"],
        lat=args["lat"],
        capacity=int(args["capacity"]),
        window_start_s=args["window_start_s"],
        window_end_s=args["window_end_s"],
        speed_mps=args["speed_mps"],
        stop_s=args["stop_s"],
    )


def _problem(stops: list[Stop], teams: list[Team], **kw: float) -> RoutingProblem:
    return RoutingProblem(
        stops=tuple(stops),
        teams=tuple(teams),
        detour_factor=float(kw.get("detour", DETOUR)),
        time_limit_s=5.0,
        seed=int(kw.get("seed", 1)),
        prize_scale_m=float(kw.get("prize_scale", PRIZE_SCALE)),
        max_iterations=300,
    )


def test_capacity_breaks_names_the_constraint_and_who_is_left() -> None:
    stops = [
        Stop(key=k, lon=LON0 + 0.01 * k, lat=LAT0, prize=1.0, required=True) for k in (1, 2, 3)
    ]
    problem = _problem(stops, [_team(capacity=2)])
    result = solve(problem)
    _check_plan(problem, result)
    assert not result.feasible
    assert len(result.unassigned) == 1
    assert result.unassigned[0][1] == REASON_CAPACITY


def test_time_window_breaks_names_the_constraint_and_who_is_left() -> None:
    near = Stop(key=1, lon=LON0 + 0.01, lat=LAT0, prize=1.0, required=True)
    far = Stop(key=2, lon=LON0 + 0.6, lat=LAT0, prize=1.0, required=True)  # ~51 km away
    problem = _problem([near, far], [_team(window_end_s=NIGHT + 3600)])
    result = solve(problem)
    _check_plan(problem, result)
    assert not result.feasible
    assert result.unassigned == ((2, REASON_TIME_WINDOW),)
    assert [p.key for p in result.routes[0].stops] == [1]


def test_time_runs_out_before_capacity() -> None:
    # Six required homes ~2 km apart, 15 min a stop, a one-hour window: not all fit.
    stops = [
        Stop(
            key=k,
            lon=LON0 + 0.02 * math.cos(k),
            lat=LAT0 + 0.02 * math.sin(k),
            prize=1.0,
            required=True,
        )
        for k in range(6)
    ]
    problem = _problem(stops, [_team(window_end_s=NIGHT + 3600, stop_s=900)])
    result = solve(problem)
    _check_plan(problem, result)
    assert not result.feasible
    assert result.unassigned
    assert {r for _, r in result.unassigned} == {REASON_TIME_WINDOW}


def test_optional_stops_are_taken_when_worth_it() -> None:
    near_rich = Stop(key=1, lon=LON0 + 0.02, lat=LAT0, prize=5.0, required=False)
    far_poor = Stop(key=2, lon=LON0 - 0.1, lat=LAT0, prize=0.1, required=False)  # ~8.5 km
    problem = _problem([near_rich, far_poor], [_team()])
    result = solve(problem)
    _check_plan(problem, result)
    assert result.feasible
    assert [p.key for p in result.routes[0].stops] == [1]
    assert result.unassigned == ((2, REASON_NOT_WORTH_IT),)


def test_required_stop_is_visited_however_far() -> None:
    far = Stop(key=2, lon=LON0 - 0.1, lat=LAT0, prize=0.0, required=True)
    problem = _problem([far], [_team()])
    result = solve(problem)
    _check_plan(problem, result)
    assert result.feasible
    assert [p.key for p in result.routes[0].stops] == [2]


def test_each_team_uses_its_own_speed_and_stop_time() -> None:
    # Two teams at the same start; a slow one and a fast one, different stop times.
    rng = random.Random(5)
    stops = [
        Stop(key=k, lon=(p := _point(rng))[0], lat=p[1], prize=3.0, required=k < 4)
        for k in range(12)
    ]
    teams = [
        _team(1, speed_mps=15 / 3.6, stop_s=900, window_end_s=NIGHT + 2 * 3600),
        _team(2, speed_mps=40 / 3.6, stop_s=300, window_end_s=NIGHT + 2 * 3600),
    ]
    problem = _problem(stops, teams)
    result = solve(problem)
    _check_plan(problem, result)
    assert result.feasible


def test_same_seed_same_plan() -> None:
    problem = _instance(42, 7, 2)
    first, second = solve(problem), solve(problem)
    assert first.routes == second.routes
    assert first.unassigned == second.unassigned
    assert first.objective == second.objective


def test_no_team_leaves_everyone_unassigned() -> None:
    stops = [Stop(key=1, lon=LON0, lat=LAT0, prize=1.0, required=False)]
    result = solve(_problem(stops, []))
    assert result.routes == ()
    assert result.unassigned == ((1, REASON_NO_TEAM),)


def test_injected_distances_replace_the_geodesic() -> None:
    # A 3-point line on a plane: start 0, stops at 100 m and 300 m.
    matrix = np.array([[0, 100, 300], [100, 0, 200], [300, 200, 0]], dtype=np.float64)
    stops = (
        Stop(key=1, lon=0, lat=0, prize=0, required=True),
        Stop(key=2, lon=0, lat=0, prize=0, required=True),
    )
    problem = RoutingProblem(
        stops=stops,
        teams=(_team(speed_mps=1.0, stop_s=10),),
        detour_factor=1.0,
        time_limit_s=5.0,
        seed=0,
        max_iterations=100,
        distances_m=matrix,
    )
    result = solve(problem)
    route = result.routes[0]
    assert route.distance_m == pytest.approx(600.0)
    assert result.objective == pytest.approx(600.0)
    etas = {p.key: p.eta_s - NIGHT for p in route.stops}
    assert etas in ({1: 100.0, 2: 310.0}, {2: 300.0, 1: 510.0})


def test_geodesic_matrix_matches_geographiclib() -> None:
    rng = random.Random(3)
    pts = [(rng.uniform(73, 135), rng.uniform(18, 53)) for _ in range(25)]
    matrix = geodesic_matrix_m([p[0] for p in pts], [p[1] for p in pts])
    for i, j in itertools.combinations(range(len(pts)), 2):
        exact = geodesic_m(*pts[i], *pts[j])
        assert matrix[i, j] == pytest.approx(exact, abs=1e-3)
        assert matrix[j, i] == pytest.approx(exact, abs=1e-3)


def test_malformed_input_is_refused() -> None:
    stop = Stop(key=1, lon=LON0, lat=LAT0, prize=1.0, required=False)
    with pytest.raises(ValueError, match="unique"):
        solve(_problem([stop, stop], [_team()]))
    with pytest.raises(ValueError, match="window"):
        solve(_problem([stop], [_team(window_end_s=NIGHT - 1)]))


def test_a_night_that_cannot_fit_a_required_stop_still_plans_the_others() -> None:
    unreachable = Stop(key=1, lon=LON0 + 0.6, lat=LAT0, prize=1.0, required=True)  # ~51 km
    overdue = Stop(key=2, lon=LON0 + 0.01, lat=LAT0, prize=1.0, required=True)
    optional = [
        Stop(key=k, lon=LON0 - 0.01 * (k - 2), lat=LAT0 + 0.005, prize=5.0, required=False)
        for k in (3, 4)
    ]
    problem = _problem([unreachable, overdue, *optional], [_team(window_end_s=NIGHT + 3600)])
    result = solve(problem)
    _check_plan(problem, result)
    assert not result.feasible
    assert result.unassigned == ((1, REASON_TIME_WINDOW),)
    assert sorted(p.key for p in result.routes[0].stops) == [2, 3, 4]
